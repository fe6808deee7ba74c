"""The task library against real folders: scan, hot reload, last good, duplicates, trust."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from flowtaskd.daemon.intake.library import Library, LibraryChange

DEADLINE = 5.0


def _write(path: Path, name: str, *, description: str = "", fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = fmt or path.suffix
    if fmt == ".json":
        text = f'{{"name": "{name}", "description": "{description}", "steps": [{{"Dummy": {{}}}}]}}'
    elif fmt == ".toml":
        text = f'name = "{name}"\ndescription = "{description}"\n[[steps]]\n[steps.Dummy]\n'
    else:
        text = f"name: {name}\ndescription: '{description}'\nsteps:\n  - Dummy: {{}}\n"
    path.write_text(text)
    return path


def _kinds(changes: list[LibraryChange]) -> list[tuple[str, str | None]]:
    return [(c.kind, c.name) for c in changes]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    return folder


def test_scan_loads_nested_files_and_skips_ignored_names(root: Path) -> None:
    a = _write(root / "a.yaml", "a")
    b = _write(root / "sub" / "deep" / "b.json", "b")
    c = _write(root / "sub" / "c.TOML", "c", fmt=".toml")
    _write(root / ".hidden" / "d.yaml", "d")
    _write(root / "sub" / ".git" / "e.yaml", "e")
    _write(root / ".f.yaml", "f")
    _write(root / "g.yaml.tmp", "g")
    _write(root / "h.yaml~", "h")
    (root / "notes.txt").write_text("name: i\n")
    lib = Library([root])
    changes = lib.scan()
    assert sorted(_kinds(changes)) == [("loaded", "a"), ("loaded", "b"), ("loaded", "c")]
    assert set(lib.tasks) == {"a", "b", "c"}
    assert lib.resolve("b") == b
    assert lib.by_path(c) is lib.get("c")
    loaded = lib.get("a")
    assert loaded is not None and loaded.path == a and loaded.pile.definition.name == "a"
    assert loaded.size == a.stat().st_size and loaded.mtime_ns == a.stat().st_mtime_ns
    assert lib.invalid == {}
    assert lib.scan() == []  # nothing changed: nothing reported, nothing re-read


def test_add_change_delete(root: Path) -> None:
    lib = Library([root])
    assert lib.scan() == []
    path = _write(root / "a.yaml", "a")
    assert _kinds(lib.apply([path])) == [("loaded", "a")]
    first = lib.get("a")
    assert lib.apply([path]) == []  # unchanged
    _write(path, "a", description="second version")
    [change] = lib.apply([path])
    second = lib.get("a")
    assert (change.kind, change.previous, change.task) == ("reloaded", first, second)
    assert change.task is not None and change.task.pile.definition.header.description == (
        "second version"
    )
    assert first is not None and first.pile.definition.header.description == ""  # untouched
    path.unlink()
    [change] = lib.apply([path])
    assert (change.kind, change.name, change.previous) == ("removed", "a", second)
    assert lib.tasks == {} and lib.resolve("a") is None


def test_snapshots_do_not_change_under_a_reader(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    lib = Library([root])
    lib.scan()
    before = lib.tasks
    path.unlink()
    lib.apply([path])
    assert "a" in before and "a" not in lib.tasks


def test_invalid_change_keeps_last_good_until_fixed(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    lib = Library([root])
    lib.scan()
    good = lib.get("a")
    path.write_text("name: a\nsteps:\n  - Dummy: {}\n  - Nope: {}\n")
    [change] = lib.apply([path])
    assert (change.kind, change.name, change.kept_last_good) == ("invalid", "a", True)
    assert change.problems and "unknown component `Nope`" in change.problems[0].message
    assert change.problems[0].line == 4 and change.problems[0].file == str(path)
    assert lib.get("a") is good
    assert lib.invalid[path] == change.problems
    assert lib.apply([path]) == []  # still the same broken version: not reported again
    _write(path, "a", description="fixed")
    [change] = lib.apply([path])
    assert (change.kind, change.previous) == ("reloaded", good)
    assert lib.invalid == {}


def test_new_invalid_file_is_reported_and_dropped_silently_when_deleted(root: Path) -> None:
    path = root / "bad.yaml"
    path.write_text("name: [unclosed\n")
    lib = Library([root])
    [change] = lib.scan()
    assert (change.kind, change.name, change.kept_last_good) == ("invalid", None, False)
    assert "YAML" in change.problems[0].message
    path.unlink()
    assert lib.apply([path]) == []
    assert lib.invalid == {}


def test_atomic_replace_is_a_reload(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    lib = Library([root])
    lib.scan()
    old = lib.get("a")
    temp = _write(root / "a.yaml.tmp", "a")  # same bytes, a new file
    os.replace(temp, path)
    changes = lib.apply([path, temp])
    assert _kinds(changes) == [("reloaded", "a")]
    assert changes[0].previous is old and lib.get("a") is not old


def test_duplicates_at_scan_load_neither_then_resolve_on_removal(root: Path) -> None:
    a = _write(root / "a.yaml", "x")
    b = _write(root / "sub" / "b.yaml", "x")
    lib = Library([root])
    changes = lib.scan()
    assert _kinds(changes) == [("duplicate", "x"), ("duplicate", "x")]
    assert lib.tasks == {}
    for change, other in zip(changes, (b, a), strict=True):
        [problem] = change.problems
        assert problem.file == str(change.path) and str(other) in problem.message
        assert problem.path == "name" and problem.line == 1
        assert lib.invalid[change.path] == change.problems
    assert lib.scan() == []  # still in conflict: not reported again
    b.unlink()
    changes = lib.apply([b])
    assert _kinds(changes) == [("loaded", "x")]
    assert changes[0].path == a and lib.invalid == {}


def test_duplicate_added_later_keeps_the_first_and_names_both(root: Path) -> None:
    a = _write(root / "a.yaml", "x")
    lib = Library([root])
    lib.scan()
    first = lib.get("x")
    b = _write(root / "b.json", "x")
    [change] = lib.apply([b])
    assert (change.kind, change.path, change.name) == ("duplicate", b, "x")
    message = str(change.problems[0])
    assert str(a) in message and str(b) in message
    assert lib.get("x") is first and lib.invalid == {b: change.problems}
    assert lib.scan() == []
    a.unlink()  # the first goes: the one held back takes its place
    changes = lib.apply([a])
    assert _kinds(changes) == [("removed", "x"), ("loaded", "x")]
    assert changes[1].path == b and lib.resolve("x") == b and lib.invalid == {}


def test_duplicate_resolved_by_renaming_the_task(root: Path) -> None:
    a = _write(root / "a.yaml", "x")
    b = _write(root / "b.yaml", "x")
    lib = Library([root])
    lib.scan()
    _write(b, "y")
    changes = lib.apply([b])
    assert sorted(_kinds(changes)) == [("loaded", "x"), ("loaded", "y")]
    assert lib.resolve("x") == a and lib.resolve("y") == b and lib.invalid == {}


def test_the_first_holder_vanishing_unseen_is_noticed(root: Path) -> None:
    a = _write(root / "a.yaml", "x")
    lib = Library([root])
    lib.scan()
    b = root / "b.yaml"
    os.rename(a, b)  # a move whose delete half has not been reported yet
    changes = lib.apply([b])
    assert _kinds(changes) == [("removed", "x"), ("loaded", "x")]
    assert lib.resolve("x") == b and lib.invalid == {}


def test_renaming_the_task_removes_the_old_name_and_frees_it(root: Path) -> None:
    path = _write(root / "a.yaml", "old")
    lib = Library([root])
    lib.scan()
    held = _write(root / "b.yaml", "old")
    assert _kinds(lib.apply([held])) == [("duplicate", "old")]
    previous = lib.get("old")
    _write(path, "new")
    changes = lib.apply([path])
    assert _kinds(changes) == [("removed", "old"), ("loaded", "new"), ("loaded", "old")]
    assert changes[0].previous is previous
    assert lib.resolve("new") == path and lib.resolve("old") == held


def test_folder_deleted_and_folder_moved_in(root: Path, tmp_path: Path) -> None:
    _write(root / "keep.yaml", "keep")
    _write(root / "sub" / "a.yaml", "a")
    _write(root / "sub" / "deeper" / "b.yaml", "b")
    (root / "sub" / "broken.yaml").write_text("steps: 3\n")
    lib = Library([root])
    lib.scan()
    assert set(lib.tasks) == {"keep", "a", "b"} and len(lib.invalid) == 1
    shutil.rmtree(root / "sub")
    changes = lib.apply([root / "sub"])
    assert sorted(_kinds(changes)) == [("removed", "a"), ("removed", "b")]
    assert set(lib.tasks) == {"keep"} and lib.invalid == {}
    outside = tmp_path / "staging"
    _write(outside / "c.yaml", "c")
    _write(outside / "inner" / "d.toml", "d")
    os.rename(outside, root / "moved")
    changes = lib.apply([root / "moved"])
    assert sorted(_kinds(changes)) == [("loaded", "c"), ("loaded", "d")]


def test_file_replaced_by_folder(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    lib = Library([root])
    lib.scan()
    path.unlink()
    _write(path / "inner.yaml", "inner")
    changes = lib.apply([path])
    assert _kinds(changes) == [("removed", "a"), ("loaded", "inner")]


def test_world_writable_file_is_rejected_and_unloaded(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    path.chmod(0o666)
    lib = Library([root])
    [change] = lib.scan()
    assert (change.kind, change.name, change.previous) == ("rejected", None, None)
    [problem] = change.problems
    assert problem.file == str(path) and problem.message
    assert lib.tasks == {} and lib.invalid == {path: change.problems}
    assert lib.scan() == []  # still rejected: not reported again
    path.chmod(0o644)  # mode only: the content did not change
    assert _kinds(lib.apply([path])) == [("loaded", "a")]
    loaded = lib.get("a")
    path.chmod(0o666)  # a loaded file that becomes world-writable stops running
    [change] = lib.apply([path])
    assert (change.kind, change.name, change.previous) == ("rejected", "a", loaded)
    assert lib.tasks == {}


def test_foreign_owned_file_is_rejected_unless_trust_all(root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    path = _write(root / "a.yaml", "a")
    os.chown(path, 12345, -1)
    [change] = Library([root]).scan()
    assert change.kind == "rejected" and change.problems[0].message
    assert _kinds(Library([root], trust_all=True).scan()) == [("loaded", "a")]
    assert _kinds(Library([root], uid=12345).scan()) == [("loaded", "a")]  # the daemon's user


def test_world_writable_file_loads_with_trust_all(root: Path) -> None:
    path = _write(root / "a.yaml", "a")
    path.chmod(0o666)
    lib = Library([root], trust_all=True)
    assert _kinds(lib.scan()) == [("loaded", "a")]


def test_paths_outside_the_roots_and_ignored_names_are_not_looked_at(
    root: Path, tmp_path: Path
) -> None:
    outside = _write(tmp_path / "elsewhere.yaml", "out")
    hidden = _write(root / ".h.yaml", "h")
    lib = Library([root])
    assert lib.apply([outside, hidden, root / "x.yaml.part"]) == []
    assert lib.tasks == {}


async def test_watch_delivers_a_dropped_file_and_stops(root: Path) -> None:
    lib = Library([root])
    await asyncio.to_thread(lib.scan)
    stop = asyncio.Event()
    seen: list[LibraryChange] = []
    arrived = asyncio.Event()

    def on_changes(changes: list[LibraryChange]) -> None:
        seen.extend(changes)
        arrived.set()

    async def wait_for(name: str) -> None:
        async with asyncio.timeout(DEADLINE):
            while lib.get(name) is None:
                arrived.clear()
                await arrived.wait()

    watcher = asyncio.create_task(lib.watch(stop, on_changes))
    # Ready once a probe file is seen: the native watches are in place from then on.
    probe = root / "probe.yaml"
    async with asyncio.timeout(DEADLINE):
        attempt = 0
        while lib.get("probe") is None:
            attempt += 1
            _write(probe, "probe", description=str(attempt))
            try:
                async with asyncio.timeout(0.1):
                    await wait_for("probe")
            except TimeoutError:
                continue
    staging = root.parent / "staging.yaml"
    _write(staging, "dropped")
    os.rename(staging, root / "sub-dropped.yaml")
    await wait_for("dropped")
    assert ("loaded", "dropped") in _kinds(seen)
    stop.set()
    await asyncio.wait_for(watcher, DEADLINE)
    assert watcher.done() and watcher.exception() is None


def test_a_held_back_file_turning_invalid_ends_the_contest(root: Path) -> None:
    a = _write(root / "a.yaml", "x")
    b = _write(root / "b.yaml", "x")
    lib = Library([root])
    lib.scan()
    b.write_text("name: x\nsteps: []\n")
    changes = lib.apply([b])
    assert _kinds(changes) == [("invalid", None), ("loaded", "x")]
    assert lib.resolve("x") == a and set(lib.invalid) == {b}


def test_folder_renamed_inside_the_library_in_one_batch(root: Path) -> None:
    _write(root / "one" / "a.yaml", "a")
    lib = Library([root])
    lib.scan()
    os.rename(root / "one", root / "two")
    changes = lib.apply({root / "two", root / "one"})  # a set: no order to rely on
    assert _kinds(changes) == [("removed", "a"), ("loaded", "a")]
    assert lib.resolve("a") == root / "two" / "a.yaml"


def test_a_file_that_cannot_be_stated_is_invalid_and_the_rest_loads(root: Path) -> None:
    _write(root / "good.yaml", "good")
    loop = root / "loop.yaml"
    loop.symlink_to(loop)  # stat: ELOOP
    lib = Library([root], trust_all=True)
    changes = lib.scan()
    assert sorted(_kinds(changes)) == [("invalid", None), ("loaded", "good")]
    bad = next(c for c in changes if c.kind == "invalid")
    assert bad.path == loop and "cannot read the file" in str(bad.problems[0])
    assert set(lib.tasks) == {"good"} and loop in lib.invalid
    assert lib.scan() == []  # reported once, not at every look
    assert _kinds(lib.apply([loop])) == []  # a watch batch naming it: no exception either
    loop.unlink()
    _write(loop, "fixed")
    assert _kinds(lib.apply([loop])) == [("loaded", "fixed")]
