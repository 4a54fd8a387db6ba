"""`data.format` inferred from the annotation file where its name and header say it, and a wrong one refused in one line
naming the file and `data.format` (issue 19: a CSV read as COCO died with a bare JSONDecodeError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelserve.errors import DataError
from training.data.formats import infer_format, resolve_format

KEY = "data.train_annotations"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "voc" / "ImageSets" / "Main").mkdir(parents=True)
    written = {
        "coco": tmp_path / "instances_train.json",
        "list": tmp_path / "train.csv",
        "jsonl": tmp_path / "train.jsonl",
        "attributes": tmp_path / "attributes.csv",
        "voc": tmp_path / "voc" / "ImageSets" / "Main" / "train.txt",
        "unknown_csv": tmp_path / "other.csv",
        "unknown": tmp_path / "labels.txt",
    }
    contents = {"coco": '{"images": [], "annotations": [], "categories": []}', "list": "path, labels\na.jpg,cat\n",
                "jsonl": '{"path": "a.jpg", "labels": ["cat"]}\n', "attributes": "path,hat,coat\na.jpg,1,0\n",
                "voc": "000001\n", "unknown_csv": "file,tags\na.jpg,cat\n", "unknown": "a.jpg cat\n"}
    for name, path in written.items():
        path.write_text(contents[name])
    return written


@pytest.mark.parametrize(("name", "expected"), [("coco", "coco"), ("list", "list"), ("jsonl", "list"),
                                                ("attributes", "attributes"), ("voc", "voc")])
def test_each_format_is_inferred_from_its_file(files: dict[str, Path], name: str, expected: str) -> None:
    assert resolve_format("auto", files[name], KEY) == expected
    assert resolve_format(expected, files[name], KEY) == expected  # and the same format named explicitly passes


def test_a_list_header_also_reads_as_a_table_of_one_attribute(files: dict[str, Path]) -> None:
    assert infer_format(files["list"])[0] == ("list", "attributes")
    assert resolve_format("attributes", files["list"], KEY) == "attributes"


def test_a_wrong_format_is_one_line_naming_the_file_and_the_fix(files: dict[str, Path]) -> None:
    with pytest.raises(DataError) as refused:
        resolve_format("coco", files["list"], KEY)
    message = str(refused.value)
    assert "\n" not in message
    assert str(files["list"]) in message and "not data.format coco" in message and "data.format=list" in message
    with pytest.raises(DataError, match=r"a \.json file \(COCO instances\), not data.format voc"):
        resolve_format("voc", files["coco"], KEY)


@pytest.mark.parametrize("name", ["unknown_csv", "unknown"])
def test_a_file_that_says_nothing_asks_for_data_format(files: dict[str, Path], name: str) -> None:
    with pytest.raises(DataError, match=r"cannot tell the format of .* set data.format to coco, voc, list or "
                                        r"attributes"):
        resolve_format("auto", files[name], KEY)


def test_missing_files_and_folders_say_which_key(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.train_annotations .*absent.csv does not exist \(relative to "):
        resolve_format("auto", Path("absent.csv"), KEY)
    with pytest.raises(DataError, match="is a folder; name the annotation file"):
        resolve_format("auto", tmp_path, KEY)
    with pytest.raises(DataError, match=r"data.train_annotations is not set: pass --set data.train_annotations="):
        resolve_format("auto", Path(""), KEY)
