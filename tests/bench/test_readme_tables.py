"""The generated tables of README.md and docs/*.md equal what their committed JSON renders (bench/readme_tables.py),
each is marked once, and the mechanism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.readme_tables import (
    README,
    ROOT,
    TABLES,
    Table,
    load_tables,
    main,
    marked_tables,
    pages,
    placement_problems,
    render_readme,
)

RESULTS_PAGE = ROOT / "docs" / "results.md"


@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_page_matches_its_json(page: Path) -> None:
    load_tables()
    text = page.read_text(encoding="utf-8")
    assert render_readme(text) == text, f"{page.name} is stale: run python -m bench.readme_tables"


def test_every_table_with_json_is_marked_once_over_readme_and_docs() -> None:
    load_tables()
    texts = {str(path): path.read_text(encoding="utf-8") for path in pages()}
    assert placement_problems(texts) == []
    assert sum(len(marked_tables(text)) for text in texts.values()) >= 15  # the tables README held before issue 24


def _fake_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: float) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"rows": [{"name": "a", "value": value}]}), encoding="utf-8")
    render = lambda documents: "\n".join(f"| {r['name']} | {r['value']} |" for r in documents[0]["rows"])  # noqa: E731
    monkeypatch.setitem(TABLES, "fake", Table("fake", ("r.json",), render))


def test_marked_blocks_are_replaced_and_the_rest_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_table(monkeypatch, tmp_path, 1.5)
    text = "# T\n\nintro\n<!-- table: fake -->\nold\nlines\n<!-- /table -->\noutro\n"
    assert render_readme(text, tmp_path) == "# T\n\nintro\n<!-- table: fake -->\n| a | 1.5 |\n<!-- /table -->\noutro\n"


def test_check_fails_on_a_stale_readme_and_the_rewrite_fixes_it(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    _fake_table(monkeypatch, tmp_path, 2.0)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- table: fake -->\n| a | 1.0 |\n<!-- /table -->\n", encoding="utf-8")
    paths = ["--page", str(readme), "--root", str(tmp_path)]
    assert main(["--check", *paths]) == 1
    assert main(paths) == 0
    assert "| a | 2.0 |" in readme.read_text(encoding="utf-8")
    assert main(["--check", *paths]) == 0


def test_a_table_in_a_docs_page_is_checked_and_rendered_by_default(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """Without --page, README.md and every docs/*.md under --root are the pages."""
    _fake_table(monkeypatch, tmp_path, 3.0)
    (tmp_path / "README.md").write_text("# front door, no table\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "benchmarks.md"
    page.write_text("# B\n<!-- table: fake -->\nold\n<!-- /table -->\n", encoding="utf-8")
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert page.read_text(encoding="utf-8") == "# B\n<!-- table: fake -->\n| a | 3.0 |\n<!-- /table -->\n"
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_a_table_marked_twice_or_nowhere_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_table(monkeypatch, tmp_path, 1.0)
    block = "<!-- table: fake -->\n| a | 1.0 |\n<!-- /table -->\n"
    twice = placement_problems({"README.md": block, "docs/a.md": block}, tmp_path)
    assert any("'fake' is marked 2 times (README.md, docs/a.md)" in problem for problem in twice), twice
    nowhere = placement_problems({"README.md": "# no tables\n"}, tmp_path)
    assert any("'fake' has its JSON (r.json) but no page marks it" in problem for problem in nowhere), nowhere
    assert placement_problems({"README.md": block}, tmp_path) == []
    (tmp_path / "README.md").write_text(block, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(block, encoding="utf-8")
    assert main(["--check", "--root", str(tmp_path)]) == 1


def test_unknown_tables_and_missing_json_are_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="not registered"):
        render_readme("<!-- table: no-such-table -->\n<!-- /table -->\n", tmp_path)
    monkeypatch.setitem(TABLES, "fake", Table("fake", ("missing.json",), lambda documents: ""))
    with pytest.raises(FileNotFoundError, match=r"--out missing\.json"):
        render_readme("<!-- table: fake -->\n<!-- /table -->\n", tmp_path)


def test_the_results_page_keeps_every_accuracy_preset() -> None:
    """README's `## Results` was once deleted by a rewrite; it now lives in docs/results.md (issue 24), which must keep
    its generated tables and stay linked from README."""
    text = RESULTS_PAGE.read_text(encoding="utf-8")
    assert text.startswith("# Results\n")
    for table in ("hard-cpu-rows", "hard-cpu-claims", "accuracy-pretrained", "accuracy-cpu", "accuracy-gpu",
                  "aam-ablation-cpu", "attention-study-pretrained"):
        assert f"<!-- table: {table} -->" in text, f"docs/results.md lost table {table}"
    assert "](docs/results.md" in README.read_text(encoding="utf-8")


def test_the_command_line_sees_the_registered_tables() -> None:
    """`python -m bench.readme_tables` runs this file as `__main__`; the tables register into the imported module."""
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    result = subprocess.run([sys.executable, "-m", "bench.readme_tables", "--check"], cwd=README.parent, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
