"""``flowtaskd.components.filesel``: which files an upstream-style file step names, on real
folders (``pattern``, ``file``, ``filename``, all files; hidden files; folders)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flowtaskd.components.filesel import FilePattern, FileRef, expand, has_glob, in_folder, select


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("b.csv", "a.csv", "c.txt", ".hidden.csv", "sub/d.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    return tmp_path


def names(paths: list[Path], base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in paths)


def test_has_glob() -> None:
    assert has_glob("*.csv") and has_glob("a?.txt") and has_glob("[ab].txt")
    assert not has_glob("plain.csv") and not has_glob("{date}.csv")


def test_in_folder_is_relative_to_the_base_and_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert in_folder("/base", "x/y") == Path("/base/x/y")
    assert in_folder("/base", "/abs") == Path("/abs")
    assert in_folder(None, "rel") == Path("rel")
    assert in_folder("/base", "~/in") == tmp_path / "in"


def test_expand_keeps_plain_names_and_sorts_glob_matches(folder: Path) -> None:
    got = expand(folder, ["zz.csv", "*.csv", "c.txt"])
    assert got == [folder / "zz.csv", folder / "a.csv", folder / "b.csv", folder / "c.txt"]
    assert expand(folder, "nothing*") == []


def test_select_by_pattern_skips_hidden_files_and_may_recurse(folder: Path) -> None:
    assert names(select(folder, {"pattern": "*.csv"}), folder) == ["a.csv", "b.csv"]
    assert names(select(folder, {"pattern": "**/*.csv"}), folder) == ["a.csv", "b.csv", "sub/d.csv"]


def test_select_by_file_pattern_as_a_mapping_or_text(folder: Path) -> None:
    assert names(select(folder, {"file": {"pattern": "*.txt", "value": None}}), folder) == ["c.txt"]
    assert names(select(folder, {"file": "b.*"}), folder) == ["b.csv"]


def test_pattern_wins_over_file_and_filename(folder: Path) -> None:
    p = {"pattern": "*.txt", "file": {"pattern": "*.csv"}, "filename": "a.csv"}
    assert names(select(folder, p), folder) == ["c.txt"]


def test_select_by_filename_keeps_only_what_exists(folder: Path) -> None:
    p = {"filename": ["a.csv", "gone.csv", "*.txt", ".hidden.csv"]}
    # names are taken as given, so a hidden file named outright is selected
    assert names(select(folder, p), folder) == [".hidden.csv", "a.csv", "c.txt"]


def test_select_of_nothing_named_is_every_visible_file(folder: Path) -> None:
    assert names(select(folder, {}), folder) == ["a.csv", "b.csv", "c.txt"]
    assert names(select(folder, {}, files_only=False), folder) == ["a.csv", "b.csv", "c.txt", "sub"]


def test_select_files_only_drops_folders_and_dangling_links(folder: Path) -> None:
    os.symlink(folder / "missing", folder / "dangling.csv")
    (folder / "dir.csv").mkdir()
    assert names(select(folder, {"pattern": "*.csv"}), folder) == ["a.csv", "b.csv"]
    found = names(
        select(folder, {"filename": ["dangling.csv", "dir.csv"]}, files_only=False), folder
    )
    assert found == ["dangling.csv", "dir.csv"]  # a dangling link is still there to delete


def test_file_ref_and_pattern_models() -> None:
    assert FileRef.model_validate({"directory": "/d"}).filename is None
    with pytest.raises(ValidationError, match="directory"):
        FileRef.model_validate({"filename": "x"})
    with pytest.raises(ValidationError, match="extra"):
        FilePattern.model_validate({"pattern": "x", "mask": "%Y"})
