"""The `labelserve` command's errors: one line on stderr that says what to fix, the exit code of its kind (listed in
`--help`), and the traceback only when `--debug` or LABELSERVE_DEBUG=1 asks for it (issue 19: every CLI error was a
traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from labelserve.errors import EXIT_CODES
from labelserve_tools.cli import main

Capture = pytest.CaptureFixture[str]


def _error_line(capsys: Capture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_help_has_its_whole_first_sentence_and_the_exit_codes(capsys: Capture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "from your labelled images to a served model: check the data, train, export to ONNX, serve" in out
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in out


def test_a_config_mistake_is_one_line_and_exit_code_2(tmp_path: Path, capsys: Capture) -> None:
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    configs = Path(__file__).resolve().parents[2] / "configs"
    assert _error_line(capsys) == (f"error: config file {tmp_path / 'nope.yaml'} does not exist; the starting points "
                                   f"are {configs / 'pretrained.yaml'} (pretrained, for your own images) and "
                                   f"{configs / 'demo.yaml'} (from scratch)")
    assert main(["data", "check", "--set", "optim.lrr=1"]) == 2
    assert "unknown key optim.lrr; valid keys here: " in _error_line(capsys)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_too(tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch,
                                       how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("LABELSERVE_DEBUG", "1")
    assert main([*(["--debug"] if how == "flag" else []), "train", "--config", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "labelserve.errors.ConfigError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: config file")


def test_a_system_error_is_its_own_words_and_debug_raises_it(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "file").write_text("")
    args = ["data", "objects", "--out", str(tmp_path / "file" / "data"), "--train", "1", "--val", "1"]
    assert main(args) == 1
    assert "Not a directory" in _error_line(capsys)
    with pytest.raises(NotADirectoryError):
        main(["--debug", *args])


def test_a_dataset_mistake_is_exit_code_4_naming_the_file_and_data_format(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "train.csv").write_text("path,labels\na.jpg,cat\n")
    args = ["train", "--set", "data.format=coco", f"data.train_annotations={tmp_path / 'train.csv'}",
            f"data.val_annotations={tmp_path / 'train.csv'}", f"output_dir={tmp_path / 'run'}"]
    assert main(args) == 4
    assert _error_line(capsys) == (f"error: {tmp_path / 'train.csv'} is a CSV list (header path,labels), not "
                                   "data.format coco: set data.format=list, or leave data.format out to infer it")
    assert not (tmp_path / "run").exists()


def test_data_check_prints_the_report_and_fails_on_a_problem(tmp_path: Path, capsys: Capture) -> None:
    Image.new("RGB", (16, 16), (10, 200, 10)).save(tmp_path / "green.png")
    (tmp_path / "train.csv").write_text("path,labels\ngreen.png,green\nmissing.png,green\n")
    (tmp_path / "val.csv").write_text("path,labels\ngreen.png,green\n")
    args = ["data", "check", "--set", f"data.train_annotations={tmp_path / 'train.csv'}",
            f"data.val_annotations={tmp_path / 'val.csv'}"]
    assert main(args) == 4
    captured = capsys.readouterr()
    assert "format: list (inferred from the files); 1 labels" in captured.out and "problems (1):" in captured.out
    assert captured.err.startswith(f"error: 1 problem in the dataset, listed above; the first: "
                                   f"{tmp_path / 'train.csv'}:3: {tmp_path / 'missing.png'} does not exist")
    (tmp_path / "train.csv").write_text("path,labels\ngreen.png,green\n")
    assert main(args) == 0
    assert "no problems" in capsys.readouterr().out


def test_not_a_checkpoint_is_exit_code_5(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "best.pt").write_text("hello")
    assert main(["export", str(tmp_path / "best.pt"), "--repository", str(tmp_path), "--name", "m"]) == 5
    assert _error_line(capsys).startswith(f"error: {tmp_path / 'best.pt'} is not a labelserve checkpoint")
    assert main(["export", str(tmp_path / "none.pt"), "--repository", str(tmp_path), "--name", "m"]) == 5
    assert "checkpoint" in _error_line(capsys)


def test_serving_a_missing_repository_is_a_plain_line_and_exit_code_3(tmp_path: Path, capsys: Capture) -> None:
    assert main(["serve", "--repository", str(tmp_path / "models")]) == 3
    assert _error_line(capsys) == (f"error: model repository {tmp_path / 'models'} is not a folder; set "
                                   "LABELSERVE_MODEL_REPOSITORY (or `labelserve serve --repository`) to the folder "
                                   "that holds <model>/<version>/manifest.json, e.g. after `labelserve export`")


def test_a_bad_service_setting_names_its_variable(tmp_path: Path, capsys: Capture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELSERVE_MAX_BATCH_SIZE", "lots")
    assert main(["serve", "--repository", str(tmp_path)]) == 2
    assert _error_line(capsys).startswith("error: invalid setting: LABELSERVE_MAX_BATCH_SIZE: ")
