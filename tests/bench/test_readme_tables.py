"""README's generated tables equal what their committed JSON renders (bench/readme_tables.py), and the mechanism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.readme_tables import README, TABLES, Table, load_tables, main, render_readme


def test_readme_tables_match_their_json() -> None:
    load_tables()
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, "README.md is stale: run python -m bench.readme_tables"


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
    paths = ["--readme", str(readme), "--root", str(tmp_path)]
    assert main(["--check", *paths]) == 1
    assert main(paths) == 0
    assert "| a | 2.0 |" in readme.read_text(encoding="utf-8")
    assert main(["--check", *paths]) == 0


def test_unknown_tables_and_missing_json_are_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="not registered"):
        render_readme("<!-- table: no-such-table -->\n<!-- /table -->\n", tmp_path)
    monkeypatch.setitem(TABLES, "fake", Table("fake", ("missing.json",), lambda documents: ""))
    with pytest.raises(FileNotFoundError, match=r"--out missing\.json"):
        render_readme("<!-- table: fake -->\n<!-- /table -->\n", tmp_path)


def test_readme_keeps_a_results_section_with_every_accuracy_preset() -> None:
    """`## Results` was once deleted by a README rewrite; its generated tables must stay on the product page."""
    text = README.read_text(encoding="utf-8")
    assert "\n## Results\n" in text
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    for table in ("hard-cpu-rows", "hard-cpu-claims", "accuracy-pretrained", "accuracy-cpu", "accuracy-gpu",
                  "aam-ablation-cpu", "attention-study-pretrained"):
        assert f"<!-- table: {table} -->" in section, f"README's Results lost table {table}"


def test_the_command_line_sees_the_registered_tables() -> None:
    """`python -m bench.readme_tables` runs this file as `__main__`; the tables register into the imported module."""
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    result = subprocess.run([sys.executable, "-m", "bench.readme_tables", "--check"], cwd=README.parent, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
