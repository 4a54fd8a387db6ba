"""Every relative link and anchor in README.md and docs/*.md resolves (issue 24: README's sections moved into docs/).

A link's file must exist (relative to the page); an anchor (`page.md#slug`, or `#slug` in the same page) must be the
slug of a heading of the target page as both GitHub and MkDocs write it, since the pages are read on GitHub and on the
MkDocs site. Links with a scheme (`https:`, `mailto:`) and autolinks are not checked.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _documented_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _heading_text(markdown: str) -> str:
    """A heading's text as rendered: code spans keep their content, links their text, emphasis goes."""
    text = re.sub(r"`+([^`]*)`+", r"\1", markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"(\*\*|__|\*)", "", text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): lower case, punctuation but `-` and `_` dropped, each space a
    hyphen (so runs of hyphens stay)."""
    text = _heading_text(heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """Python-Markdown's toc slugify, which MkDocs uses: ASCII-folded, punctuation dropped, runs of spaces and hyphens
    one hyphen."""
    text = unicodedata.normalize("NFKD", _heading_text(heading)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(text: str) -> tuple[set[str], set[str]]:
    """Every heading anchor of a page, as GitHub and as MkDocs number repeated headings."""
    github: dict[str, int] = {}
    mkdocs: dict[str, int] = {}
    github_anchors: set[str] = set()
    mkdocs_anchors: set[str] = set()
    for _, line in _prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        github_anchors.add(slug if slug not in github else f"{slug}-{github[slug]}")
        github[slug] = github.get(slug, 0) + 1
        slug = mkdocs_slug(match.group(2))
        mkdocs_anchors.add(slug if slug not in mkdocs else f"{slug}_{mkdocs[slug]}")
        mkdocs[slug] = mkdocs.get(slug, 0) + 1
    return github_anchors, mkdocs_anchors


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of a markdown page, outside code blocks and code spans."""
    found = []
    for number, line in _prose_lines(text):
        prose = _CODE_SPAN.sub("", line)
        for pattern in (_INLINE_LINK, _REFERENCE_LINK, _HTML_LINK):
            found.extend((number, match.group(1)) for match in pattern.finditer(prose))
    return found


def broken_links(page: Path) -> list[str]:
    """What does not resolve among the relative links of `page`, one line each."""
    problems = []
    for number, target in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.name}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: {path_part} does not exist")
            continue
        if not anchor:
            continue
        if resolved.suffix != ".md" or not resolved.is_file():
            problems.append(f"{where}: an anchor into {path_part}, which is not a markdown page")
            continue
        github_anchors, mkdocs_anchors = _anchors(resolved.read_text(encoding="utf-8"))
        missing = [site for site, anchors in (("GitHub", github_anchors), ("MkDocs", mkdocs_anchors))
                   if anchor not in anchors]
        if missing:
            problems.append(f"{where}: no heading of {resolved.name} has the anchor #{anchor} on "
                            f"{' and '.join(missing)}")
    return problems


@pytest.mark.parametrize("page", _documented_pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_docs_pages_are_all_checked() -> None:
    names = {path.name for path in _documented_pages()}
    assert {"README.md", "index.md", "api.md", "operations.md", "deploy.md", "benchmarks.md", "results.md",
            "architecture.md", "own-images.md"} <= names


def test_slugs_follow_github_and_mkdocs() -> None:
    assert github_slug("Tuning a model: `labelserve tune`") == "tuning-a-model-labelserve-tune"
    assert mkdocs_slug("Tuning a model: `labelserve tune`") == "tuning-a-model-labelserve-tune"
    assert github_slug("Slow, broken and greedy clients: what the service guarantees") == \
        "slow-broken-and-greedy-clients-what-the-service-guarantees"
    assert github_slug("1. Write the labels") == "1-write-the-labels"
    # where the two differ: a hyphen before a space
    assert github_slug("decode- and front-end-bound") == "decode--and-front-end-bound"
    assert mkdocs_slug("decode- and front-end-bound") == "decode-and-front-end-bound"


def test_the_check_finds_broken_files_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text("# API\n\n## Service API\n\n## Service API\n\n## A - B\n",
                                              encoding="utf-8")
    (tmp_path / "docs" / "shot.png").write_bytes(b"\x89PNG")
    page = tmp_path / "README.md"
    page.write_text(
        "# Front\n\n## Here\n\n"
        "[ok](docs/api.md) [ok](docs/api.md#service-api) [ok](#here) ![ok](docs/shot.png) [ok](https://example.org/x)\n"
        "[no file](docs/missing.md) [no anchor](docs/api.md#services) [no local anchor](#there)\n"
        "[second heading, GitHub only](docs/api.md#service-api-1) [hyphens differ](docs/api.md#a---b)\n"
        "![no image](docs/gone.png) <img src=\"docs/also-gone.png\">\n"
        "[ref]: docs/nowhere.md\n"
        "`[in code](docs/ignored.md)`\n\n```\n[in a block](docs/ignored.md)\n```\n",
        encoding="utf-8")
    problems = broken_links(page)
    assert [problem.split(": ", 2)[1] for problem in problems] == [
        "docs/missing.md", "docs/api.md#services", "#there", "docs/api.md#service-api-1", "docs/api.md#a---b",
        "docs/gone.png", "docs/also-gone.png", "docs/nowhere.md"], problems
    assert "on GitHub and MkDocs" in problems[1]
    assert problems[3].endswith("on MkDocs")  # GitHub numbers a repeated heading -1, MkDocs _1
    assert problems[4].endswith("on MkDocs")
