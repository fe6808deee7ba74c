"""The task library: folders of task files, loaded at start and hot reloaded while watched.

Every task file (``.json``, ``.yaml``, ``.yml``, ``.toml``) under the library roots, at any
depth, is a task, known by its ``name:``. Hidden files, dot-folders and temporary names
(:func:`~flowtaskd.daemon.intake.watcher.is_ignored`) are not. Symlinked folders are not followed.

A watch batch is a *set of paths*; each one is stat'ed and judged from what is on disk now
(watchfiles' added/modified flags are unreliable: an atomic replace shows as *added*):

- gone: a loaded task is ``removed``; an invalid one just leaves :attr:`Library.invalid`;
- a folder (created, moved in, deleted): its whole subtree is rescanned;
- same mtime, size and inode as last seen: nothing;
- new or changed and valid: ``loaded`` / ``reloaded`` (parsed in the calling thread);
- changed and invalid: ``invalid``; the last good version stays loaded (``kept_last_good``)
  until the file is fixed (``reloaded``) or removed;
- not trusted (:func:`~flowtaskd.daemon.intake.trust.untrusted_reason`, unless ``trust_all``):
  ``rejected``, and a version loaded before is *unloaded* (``previous`` is set): a file that
  became world-writable or changed owner must not keep running. Trust is checked on every
  look at a file, not only when its content changes, so a ``chmod`` alone is caught.
- a changed ``name:`` retires the old name (``removed``) and claims the new one.

Names are unique and nobody wins silently. A file claiming a name another file already
holds is not loaded (``duplicate``, naming both files); the holder stays, it was there first.
Files that claim one free name in the same batch (two files at start-up) are *all* held back.
When the contest ends (a file removed, renamed or fixed) the files held back for that name
are looked at again, and a lone claimant is loaded.

In a batch's list of changes, every unload (``removed``, ``rejected`` with ``previous``)
comes before every load, so a name moving from one file to another is dropped, then added.

:attr:`Library.tasks` and :attr:`Library.invalid` are read-only views of snapshots replaced
whole at the end of each batch, so the event loop may read them while a batch runs in a
thread. :class:`LoadedTask` objects and their piles are never mutated: a run keeps the
definition it started with.
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_mod
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from flowtaskd.core.loader import TASK_SUFFIXES
from flowtaskd.core.pile import TaskPile
from flowtaskd.daemon.intake.trust import untrusted_reason
from flowtaskd.daemon.intake.watcher import is_ignored, watch_until_present
from flowtaskd.errors import Problem, TaskNotFound, TaskParseError
from flowtaskd.logs import get_logger
from flowtaskd.tasks import load_pile

__all__ = ["Library", "LibraryChange", "LoadedTask"]

_Sig = tuple[int, int, int, int]
_NO_SIG: _Sig = (0, 0, 0, 0)  # a file that cannot be stat'ed

_log = get_logger("flowtaskd.library")


@dataclass(frozen=True, slots=True)
class LoadedTask:
    """One valid task file as loaded: its pile (``pile.definition``) and the version read."""

    name: str
    path: Path
    pile: TaskPile
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class LibraryChange:
    """What one batch changed for one file.

    ``kind`` is ``loaded``, ``reloaded``, ``removed``, ``invalid``, ``rejected`` or
    ``duplicate``. ``previous`` is the version that stopped being loaded (reloaded, removed,
    rejected); ``task`` the version now loaded (loaded, reloaded).
    """

    kind: str
    path: Path
    name: str | None = None
    previous: LoadedTask | None = None
    task: LoadedTask | None = None
    problems: tuple[Problem, ...] = ()
    kept_last_good: bool = False


@dataclass(slots=True)
class _View:
    """The published state; a batch edits a copy and swaps it in."""

    tasks: dict[str, LoadedTask] = field(default_factory=dict)
    by_path: dict[Path, LoadedTask] = field(default_factory=dict)
    invalid: dict[Path, tuple[Problem, ...]] = field(default_factory=dict)

    def copy(self) -> _View:
        return _View(dict(self.tasks), dict(self.by_path), dict(self.invalid))


@dataclass(slots=True)
class _Seen:
    """The last look at a file that exists: its version, and why it is not loaded."""

    sig: _Sig
    reason: str | None = None  # while rejected
    held: LoadedTask | None = None  # while held back as a duplicate


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def _stat(path: Path) -> os.stat_result | OSError | None:
    """The stat of ``path``; None if it is gone; the error if it cannot be stat'ed (a link
    loop, a folder it is in that cannot be searched): that file is invalid, not fatal."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return exc


class Library:
    """The tasks defined by the files under ``roots``; see the module docstring."""

    def __init__(
        self, roots: Sequence[Path], *, trust_all: bool = False, uid: int | None = None
    ) -> None:
        self._roots = tuple(Path(os.path.abspath(root)) for root in roots)
        self._trust_all = trust_all
        self._uid = uid
        self._lock = threading.Lock()  # one batch at a time (scan and apply run in threads)
        self._view = _View()
        self._files: dict[Path, _Seen] = {}  # every task file present, as last looked at
        self._held: dict[str, set[Path]] = {}  # name -> files held back as duplicates

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    @property
    def tasks(self) -> Mapping[str, LoadedTask]:
        """The loaded tasks by name (a snapshot; never changes under the reader)."""
        return MappingProxyType(self._view.tasks)

    @property
    def invalid(self) -> Mapping[Path, tuple[Problem, ...]]:
        """Current problems per file: invalid, rejected and duplicate files."""
        return MappingProxyType(self._view.invalid)

    def get(self, name: str) -> LoadedTask | None:
        return self._view.tasks.get(name)

    def resolve(self, name: str) -> Path | None:
        """The file of the task called ``name`` (for ``Task(resolve_task=...)``)."""
        task = self._view.tasks.get(name)
        return task.path if task is not None else None

    def by_path(self, path: Path) -> LoadedTask | None:
        return self._view.by_path.get(Path(os.path.abspath(path)))

    def scan(self) -> list[LibraryChange]:
        """Look at every file under every root (start-up, reload). Blocking: run in a thread."""
        return self.apply(self._roots)

    def apply(self, paths: Iterable[Path]) -> list[LibraryChange]:
        """Look again at changed paths (files or folders). Blocking: run in a thread."""
        with self._lock:
            batch = _Batch(self)
            batch.run(Path(os.path.abspath(path)) for path in paths)
            self._view = batch.view
            return batch.changes

    async def watch(
        self,
        stop_event: asyncio.Event,
        on_changes: Callable[[list[LibraryChange]], None],
    ) -> None:
        """Apply every batch the watcher reports, until ``stop_event`` is set.

        ``on_changes`` gets each non-empty list of changes (on the event loop); an exception
        it raises ends the watch. Call :meth:`scan` first: changes made before the native
        watches are in place are only seen by the next scan.
        """

        # hot reload needs no millisecond latency: a slower poll keeps the idle daemon quiet;
        # a task folder that does not exist yet (a fresh install) is waited for, not fatal
        def missing(root: Path) -> None:
            _log.warning("task_folder_missing", folder=str(root), hint="watching for it")

        batches = watch_until_present(self._roots, stop_event, step_ms=50, on_missing=missing)
        async for paths in batches:
            changes = await asyncio.to_thread(self.apply, paths)
            if changes:
                on_changes(changes)

    # -- used by _Batch ----------------------------------------------------------------------
    def _root_of(self, path: Path) -> Path | None:
        """A root holding ``path`` under which it is not an ignored name."""
        for root in self._roots:
            if path == root or (path.is_relative_to(root) and not is_ignored(path, root)):
                return root
        return None

    def _untrusted(self, path: Path, st: os.stat_result) -> str | None:
        if self._trust_all:
            return None
        # A symbolic link is judged by trust itself (the link's owner matters too).
        known = None if path.is_symlink() else st
        return untrusted_reason(path, known, uid=self._uid)


class _Batch:
    """One pass over a set of paths: look at each, then settle every name in contest."""

    def __init__(self, library: Library) -> None:
        self.lib = library
        self.view = library._view.copy()
        self.files = library._files
        self.held = library._held
        self.changes: list[LibraryChange] = []
        self.claims: dict[str, dict[Path, LoadedTask]] = {}  # fresh valid versions by name
        self.contested: set[str] = set()  # names whose holder or held files changed
        self.done: set[Path] = set()

    def run(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.look(path)
        # The other files in each contest may have changed unseen: look at them too.
        for name in sorted(self.contested | set(self.claims)):
            involved = set(self.held.get(name, ()))
            holder = self.view.tasks.get(name)
            if holder is not None:
                involved.add(holder.path)
            for path in sorted(involved - self.done):
                self.look(path)
        for name in sorted(self.contested | set(self.claims)):
            self.settle(name)

    def look(self, path: Path) -> None:
        root = self.lib._root_of(path)
        if root is None:
            return
        st = _stat(path)
        if isinstance(st, OSError):
            if path.suffix.lower() in TASK_SUFFIXES:
                self.unreadable(path, st)
            return
        if st is None:
            self.gone_under(path, keep=set())
        elif stat_mod.S_ISDIR(st.st_mode):
            self.tree(path, root)
        elif stat_mod.S_ISREG(st.st_mode) and path.suffix.lower() in TASK_SUFFIXES:
            self.file(path, st)
        elif path in self.files:  # replaced by something that is not a task file
            self.gone(path)

    def tree(self, folder: Path, root: Path) -> None:
        found: list[Path] = []
        for base, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = Path(base, name)
                if path.suffix.lower() in TASK_SUFFIXES and not is_ignored(path, root):
                    found.append(path)
        present: set[Path] = set()
        for path in found:
            st = _stat(path)
            if isinstance(st, OSError):
                present.add(path)
                self.unreadable(path, st)
            elif st is not None and stat_mod.S_ISREG(st.st_mode):
                present.add(path)
                self.file(path, st)
        self.gone_under(folder, keep=present)

    def gone_under(self, folder: Path, keep: set[Path]) -> None:
        for path in sorted(p for p in self.files if p.is_relative_to(folder)):
            if path not in keep:
                self.gone(path)

    def file(self, path: Path, st: os.stat_result) -> None:
        if path in self.done:
            return
        self.done.add(path)
        sig = _sig(st)
        seen = self.files.get(path)
        reason = self.lib._untrusted(path, st)
        if reason is not None:
            if seen is None or seen.reason != reason or seen.sig != sig:
                self.reject(path, sig, reason)
        elif seen is None or seen.reason is not None or seen.sig != sig:
            self.read(path, st)

    def read(self, path: Path, st: os.stat_result) -> None:
        problems: tuple[Problem, ...] = ()
        try:
            pile = load_pile(path)  # (load_task + TaskPile built the graph twice)
            definition = pile.definition
        except TaskNotFound:  # deleted between the stat and the read
            self.gone(path)
            return
        except TaskParseError as error:
            problems = tuple(error.problems) or (Problem("invalid task", str(path)),)
        except Exception as error:  # a component's validator crashed: one file, not the library
            problems = (Problem(f"cannot load: {type(error).__name__}: {error}", str(path)),)
        self.unhold(path)
        self.files[path] = _Seen(_sig(st))
        previous = self.view.by_path.get(path)
        if problems:
            self.view.invalid[path] = problems
            name = previous.name if previous is not None else None
            kept = previous is not None
            self.emit("invalid", path, name, problems=problems, kept_last_good=kept)
            return
        task = LoadedTask(definition.name, path, pile, st.st_mtime_ns, st.st_size)
        if previous is not None and previous.name != task.name:  # renamed: retire the old name
            self.unload(previous)
            self.emit("removed", path, previous.name, previous=previous)
        self.claims.setdefault(task.name, {})[path] = task

    def unreadable(self, path: Path, error: OSError) -> None:
        """A task file that cannot be stat'ed: invalid (once per cause), the rest goes on."""
        if path in self.done:
            return
        self.done.add(path)
        reason = f"cannot read the file: {error.strerror or error}"
        seen = self.files.get(path)
        if seen is not None and seen.reason == reason and seen.sig == _NO_SIG:
            return  # already reported
        self.unhold(path)
        self.files[path] = _Seen(_NO_SIG, reason=reason)
        problems = (Problem(reason, str(path)),)
        self.view.invalid[path] = problems
        previous = self.view.by_path.get(path)
        if previous is not None:
            self.unload(previous)
            self.emit("removed", path, previous.name, previous=previous)
        self.emit("invalid", path, None, problems=problems)

    def reject(self, path: Path, sig: _Sig, reason: str) -> None:
        self.unhold(path)
        self.files[path] = _Seen(sig, reason=reason)
        problems = (Problem(reason, str(path)),)
        self.view.invalid[path] = problems
        previous = self.view.by_path.get(path)
        if previous is not None:
            self.unload(previous)
        name = previous.name if previous is not None else None
        self.emit("rejected", path, name, previous=previous, problems=problems)

    def gone(self, path: Path) -> None:
        self.done.add(path)
        self.unhold(path)
        self.files.pop(path, None)
        self.view.invalid.pop(path, None)
        previous = self.view.by_path.get(path)
        if previous is not None:
            self.unload(previous)
            self.emit("removed", path, previous.name, previous=previous)

    def unload(self, task: LoadedTask) -> None:
        del self.view.tasks[task.name]
        del self.view.by_path[task.path]
        self.contested.add(task.name)

    def unhold(self, path: Path) -> None:
        seen = self.files.get(path)
        if seen is not None and seen.held is not None:
            name = seen.held.name
            self.held[name].discard(path)
            if not self.held[name]:
                del self.held[name]
            self.contested.add(name)
            seen.held = None

    def settle(self, name: str) -> None:
        """Load the one rightful claimant of ``name``, hold back the others."""
        fresh = self.claims.get(name, {})
        claimants: dict[Path, LoadedTask] = {}
        for path in sorted(self.held.get(name, ())):
            seen = self.files[path]
            if seen.held is not None and path not in fresh:
                claimants[path] = seen.held
        claimants.update(fresh)
        holder = self.view.tasks.get(name)
        if holder is not None and holder.path in claimants:
            self.load(claimants.pop(holder.path), holder)
        elif holder is None and len(claimants) == 1:
            self.load(claimants.popitem()[1], None)
        holder = self.view.tasks.get(name)
        for path, task in claimants.items():
            if holder is not None:
                text = f"task `{name}` is already defined in {holder.path}; {path} is not loaded"
            else:
                others = ", ".join(str(p) for p in claimants if p != path)
                text = f"task `{name}` is also defined in {others}; none of them is loaded"
            line = task.pile.definition.line_of(("name",))
            hint = "give each task its own `name:`, or remove one of the files"
            problems = (Problem(text, str(path), line, "name", hint),)
            if path in fresh or self.view.invalid.get(path) != problems:
                self.emit("duplicate", path, name, problems=problems)
            self.view.invalid[path] = problems
            self.files[path].held = task
            self.held.setdefault(name, set()).add(path)

    def load(self, task: LoadedTask, previous: LoadedTask | None) -> None:
        self.view.tasks[task.name] = task
        self.view.by_path[task.path] = task
        self.view.invalid.pop(task.path, None)
        held = self.held.get(task.name)
        if held is not None and task.path in held:
            held.discard(task.path)
            if not held:
                del self.held[task.name]
        self.files[task.path].held = None
        kind = "reloaded" if previous is not None else "loaded"
        self.emit(kind, task.path, task.name, previous=previous, task=task)

    def emit(
        self,
        kind: str,
        path: Path,
        name: str | None,
        *,
        previous: LoadedTask | None = None,
        task: LoadedTask | None = None,
        problems: tuple[Problem, ...] = (),
        kept_last_good: bool = False,
    ) -> None:
        change = LibraryChange(kind, path, name, previous, task, problems, kept_last_good)
        self.changes.append(change)
