"""Join the rows of one benchmark run in several parts (`--only` / `--task` / `--variants` slices run one after
another or side by side) into one JSON document, in a given row order.

    python -m bench.merge_results part1.json part2.json --out bench/results/accuracy-pretrained.json

The first part's metadata is kept; `parts` records every part's file, start time and wall time, and `wall_seconds`
becomes the sum of the rows' own `row_seconds` where every row has one (the time the preset would take run
serially), else the sum of the parts' wall times.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["merge_documents"]


def merge_documents(documents: list[dict[str, Any]], names: list[str],
                    order: list[str] | None = None) -> dict[str, Any]:
    """One document with every part's rows (sorted by `order` of `task/method` keys when given)."""
    if len({d["benchmark"] for d in documents}) != 1:
        raise ValueError(f"parts come from different benchmarks: {sorted({d['benchmark'] for d in documents})}")
    rows = [row for document in documents for row in document["rows"]]
    if order:
        rank = {key: index for index, key in enumerate(order)}
        rows.sort(key=lambda r: rank.get(f"{r['task']}/{r['method']}", len(rank)))
    merged = {**documents[0], "rows": rows}
    merged["parts"] = [{"file": name, "created_at": d["created_at"], "wall_seconds": d.get("wall_seconds")}
                       for name, d in zip(names, documents, strict=True)]
    if all("row_seconds" in r for r in rows):
        merged["wall_seconds"] = sum(r["row_seconds"] for r in rows)
    else:
        merged["wall_seconds"] = sum(d.get("wall_seconds") or 0.0 for d in documents)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--order", nargs="*", help="task/method keys in table order (default: the parts' order)")
    args = parser.parse_args()
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in args.parts]
    merged = merge_documents(documents, [p.name for p in args.parts], args.order)
    args.out.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(merged['rows'])} rows")


if __name__ == "__main__":
    main()
