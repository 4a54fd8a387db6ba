"""Tables generated from committed benchmark JSON, so the figures in README and docs/ cannot drift or vanish.

    python -m bench.readme_tables            # rewrite every marked table in README.md and docs/*.md from its JSON
    python -m bench.readme_tables --check    # exit 1 (with a diff) when a page differs from what the JSON renders

A page (README.md or any docs/*.md) marks each generated block with a pair of comments; everything between them is
owned by the generator:

    <!-- table: accuracy-cpu -->
    ...generated markdown...
    <!-- /table -->

A table is registered by name with the JSON files it reads (paths relative to the repository) and a function that
turns their parsed contents into markdown, in a module listed in `TABLE_MODULES`:

    @register_table("engine-cpu", "bench/results/engine-cpu.json")
    def _engine(documents: list[dict]) -> str: ...

Benchmarks write timestamped files by default (`<name>-YYYYmmdd-HHMMSS.json`, ignored by git); a run meant for the
pages is written with a stable name (`--out bench/results/<name>.json`), committed, and rendered from there.
A table is marked at most once over all the pages, and every registered table whose JSON is committed is marked
somewhere (a table whose JSON is not committed yet may wait unmarked); a marker naming an unregistered table is an
error.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["README", "ROOT", "TABLES", "TABLE_MODULES", "Table", "load_tables", "marked_tables", "pages",
           "placement_problems", "register_table", "render_readme", "render_table"]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = "docs"  # besides README.md, every markdown page in this folder may mark tables
_BLOCK = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)

Renderer = Callable[[list[dict[str, Any]]], str]

# modules whose import registers tables (one per family of benchmarks)
TABLE_MODULES = ("bench.accuracy_tables", "bench.hard_tables", "bench.serving_tables")


@dataclass(frozen=True)
class Table:
    """A named generated table: the JSON files it is rendered from, and how."""

    name: str
    sources: tuple[str, ...]
    render: Renderer


TABLES: dict[str, Table] = {}


def register_table(name: str, *sources: str) -> Callable[[Renderer], Renderer]:
    """Decorator registering `render(documents) -> markdown` as table `name` over `sources` (repository paths)."""

    def decorate(render: Renderer) -> Renderer:
        if name in TABLES:
            raise ValueError(f"table {name!r} is registered twice")
        TABLES[name] = Table(name, sources, render)
        return render

    return decorate


def load_tables() -> dict[str, Table]:
    """Import every module of `TABLE_MODULES` (registering their tables) and return the registry."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return TABLES


def render_table(name: str, root: Path = ROOT) -> str:
    """The markdown of one registered table, ending with a newline."""
    try:
        table = TABLES[name]
    except KeyError:
        raise KeyError(f"a page marks table {name!r}, which is not registered; known: {sorted(TABLES)}") from None
    documents = []
    for source in table.sources:
        path = root / source
        if not path.is_file():
            raise FileNotFoundError(f"table {name!r} reads {source}, which does not exist (run its benchmark with "
                                    f"--out {source} and commit the file)")
        documents.append(json.loads(path.read_text(encoding="utf-8")))
    return table.render(documents).rstrip("\n") + "\n"


def render_readme(text: str, root: Path = ROOT) -> str:
    """`text` (README.md or a docs page) with every marked block replaced by its table's current rendering."""
    return _BLOCK.sub(lambda m: m.group(1) + render_table(m.group("name"), root) + m.group(4), text)


def marked_tables(text: str) -> list[str]:
    """Names of the tables `text` marks, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may mark tables: README.md and every `docs/*.md` under `root`."""
    return [root / "README.md", *sorted((root / DOCS).glob("*.md"))]


def placement_problems(texts: dict[str, str], root: Path = ROOT) -> list[str]:
    """What is wrong with where `texts` (page name -> text) mark the registered tables: a table marked more than once,
    or a registered table whose JSON is committed under `root` and which no page marks."""
    where: dict[str, list[str]] = {}
    for page, text in texts.items():
        for name in marked_tables(text):
            where.setdefault(name, []).append(page)
    problems = [f"table {name!r} is marked {len(found)} times ({', '.join(found)}); mark it once"
                for name, found in sorted(where.items()) if len(found) > 1]
    for name, table in sorted(TABLES.items()):
        committed = all((root / source).is_file() for source in table.sources)
        if committed and name not in where:
            problems.append(f"table {name!r} has its JSON ({', '.join(table.sources)}) but no page marks it: add "
                            f"<!-- table: {name} --> <!-- /table --> to the page of its section")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a page is stale")
    parser.add_argument("--page", "--readme", dest="pages", type=Path, action="append",
                        help="a page to render (repeatable; default: README.md and docs/*.md under --root)")
    parser.add_argument("--root", type=Path, default=ROOT, help="where the tables' JSON paths start")
    args = parser.parse_args(argv)
    load_tables()
    paths = args.pages or pages(args.root)
    texts = {str(path): path.read_text(encoding="utf-8") for path in paths}
    stale = False
    for path in paths:
        current = texts[str(path)]
        try:
            rendered = render_readme(current, args.root)
        except (KeyError, FileNotFoundError) as error:
            print(f"{path}: {error.args[0]}", file=sys.stderr)
            stale = True
            continue
        if rendered == current:
            continue
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(keepends=True),
                                                       rendered.splitlines(keepends=True), str(path), "rendered"))
            print(f"{path} differs from its JSON: run python -m bench.readme_tables", file=sys.stderr)
            stale = True
        else:
            path.write_text(rendered, encoding="utf-8")
            print(f"rendered {len(marked_tables(current))} tables into {path}")
    problems = placement_problems(texts, args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if stale or problems else 0


if __name__ == "__main__":
    # run as `python -m`, this file is `__main__`, while table modules register into `bench.readme_tables`: use that
    from bench.readme_tables import main as registered_main

    sys.exit(registered_main())
