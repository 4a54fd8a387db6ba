"""README tables generated from committed benchmark JSON, so the figures on the product page cannot drift or vanish.

    python -m bench.readme_tables            # rewrite every marked table in README.md from its JSON
    python -m bench.readme_tables --check    # exit 1 (with a diff) when README.md differs from what the JSON renders

README.md marks each generated block with a pair of comments; everything between them is owned by the generator:

    <!-- table: accuracy-cpu -->
    ...generated markdown...
    <!-- /table -->

A table is registered by name with the JSON files it reads (paths relative to the repository) and a function that
turns their parsed contents into markdown, in a module listed in `TABLE_MODULES`:

    @register_table("engine-cpu", "bench/results/engine-cpu.json")
    def _engine(documents: list[dict]) -> str: ...

Benchmarks write timestamped files by default (`<name>-YYYYmmdd-HHMMSS.json`, ignored by git); a run meant for the
README is written with a stable name (`--out bench/results/<name>.json`), committed, and rendered from there.
Registered tables that README.md does not mark are allowed (they may be rendered elsewhere); a marker naming an
unregistered table is an error.
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

__all__ = ["README", "ROOT", "TABLES", "TABLE_MODULES", "Table", "load_tables", "register_table", "render_readme",
           "render_table"]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- table: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)

Renderer = Callable[[list[dict[str, Any]]], str]

# modules whose import registers tables (one per family of benchmarks)
TABLE_MODULES = ("bench.accuracy_tables", "bench.hard_tables", "bench.serving_tables")


@dataclass(frozen=True)
class Table:
    """A named README table: the JSON files it is rendered from, and how."""

    name: str
    sources: tuple[str, ...]
    render: Renderer


TABLES: dict[str, Table] = {}


def register_table(name: str, *sources: str) -> Callable[[Renderer], Renderer]:
    """Decorator registering `render(documents) -> markdown` as table `name` over `sources` (repository paths)."""

    def decorate(render: Renderer) -> Renderer:
        if name in TABLES:
            raise ValueError(f"README table {name!r} is registered twice")
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
        raise KeyError(f"README marks table {name!r}, which is not registered; known: {sorted(TABLES)}") from None
    documents = []
    for source in table.sources:
        path = root / source
        if not path.is_file():
            raise FileNotFoundError(f"table {name!r} reads {source}, which does not exist (run its benchmark with "
                                    f"--out {source} and commit the file)")
        documents.append(json.loads(path.read_text(encoding="utf-8")))
    return table.render(documents).rstrip("\n") + "\n"


def render_readme(text: str, root: Path = ROOT) -> str:
    """`text` with every marked block replaced by its table's current rendering."""
    return _BLOCK.sub(lambda m: m.group(1) + render_table(m.group("name"), root) + m.group(4), text)


def marked_tables(text: str) -> list[str]:
    """Names of the tables `text` marks, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if README.md is stale")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--root", type=Path, default=ROOT, help="where the tables' JSON paths start")
    args = parser.parse_args(argv)
    load_tables()
    current = args.readme.read_text(encoding="utf-8")
    rendered = render_readme(current, args.root)
    if args.check:
        if rendered != current:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(keepends=True),
                                                       rendered.splitlines(keepends=True), "README.md", "rendered"))
            print("README.md differs from its JSON: run python -m bench.readme_tables", file=sys.stderr)
            return 1
        return 0
    if rendered != current:
        args.readme.write_text(rendered, encoding="utf-8")
    print(f"rendered {len(marked_tables(current))} tables into {args.readme}")
    return 0


if __name__ == "__main__":
    # run as `python -m`, this file is `__main__`, while table modules register into `bench.readme_tables`: use that
    from bench.readme_tables import main as registered_main

    sys.exit(registered_main())
