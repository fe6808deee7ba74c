"""Carry a child's output from a pipe into its log file, creating the file at the first byte.

A step's stdout and stderr are pipes, not files: most steps print nothing, and creating two
files per step was most of the cost of running a short command (an inode allocation is
0.02-0.6 ms on a journalled disk, against ~0.5 ms for the whole fork and exec). An
:class:`OutputRelay` watches the read end of its pipe (in the loop's
:class:`~flowtaskd.process.readyset.ReadySet`). At the first byte it creates the log file
and from then on moves the data with ``splice(2)``: the bytes go from the pipe to the file
inside the kernel and never through this process, so a step printing a gigabyte costs no
memory here. A step that prints nothing leaves no file.

We keep our copy of the pipe's write end open while the child runs, so the pipe never
reads as closed meanwhile: an exiting child closes its pipes just before the loop learns
that it has exited, and watching for that would cost a short step a second wake-up.
When the child has exited, :meth:`OutputRelay.finish` closes our copy and drains what is
left. If some process the
step left behind still holds the pipe open, the relay is handed to a small thread that goes
on copying until that process closes it: its output still reaches the log file, and the
step does not wait for it (as it never did when the output went straight to a file).

Writing the file can fail (a full disk, a log folder removed meanwhile): the relay then
keeps draining the pipe, so the child never blocks, discards the rest and reports why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading

from flowtaskd.process.readyset import ReadySet, ready_set

__all__ = ["OutputRelay"]

_CHUNK = 1 << 20  # per splice(2): moved in the kernel, nothing allocated here
_READ = 1 << 16  # per read(2): a pipe holds 64 KiB by default
_PUMPS_PER_WAKEUP = 16  # at most this many chunks per readable event, then let the loop run
_FINAL_CHUNKS = 64  # what finish() moves itself before handing a busy pipe to a thread
_SPLICE = getattr(os, "splice", None)
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


class OutputRelay:
    """One pipe into one lazily created log file; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], loop: asyncio.AbstractEventLoop) -> None:
        self.path = os.fspath(path)
        self.size = 0  # bytes written to the file
        self.error: str | None = None  # why output was discarded, if it was
        self._file: int | None = None  # the log file, once created (kept for reading back)
        self._read, self.child_end = os.pipe()  # both close-on-exec; Popen dup2s child_end
        self._set: ReadySet | None = None
        self._closed = False
        try:  # both ends stay blocking: we read only what poll/epoll say is there
            self._set = ready_set(loop)
            self._set.add(self._read, self._pump)
        except BaseException:
            self.close()
            raise

    @property
    def created(self) -> bool:
        """Whether the log file exists (the child printed at least one byte)."""
        return self._file is not None

    def _drop_child_end(self) -> None:
        """Close our copy of the child's end, so that EOF can come once the child's is gone."""
        if self.child_end >= 0:
            os.close(self.child_end)
            self.child_end = -1

    def finish(self) -> None:
        """After the child exited: take what is in the pipe; hand the rest to a thread."""
        if self._closed or self._read < 0:
            return
        self._drop_child_end()
        for _ in range(_FINAL_CHUNKS):
            events = _poll_now(self._read)
            if events & select.POLLIN:
                self._move()
            elif events & select.POLLHUP:  # empty, and every writer has closed it: done
                self._unwatch(closing=True)
                self._close_pipe()
                return
            else:
                break  # empty, but still open: a process the step left behind holds it
        # follow that process (or a writer that would not stop) without making the step wait
        self._unwatch(closing=False)
        fd, self._read = self._read, -1
        file_fd = os.dup(self._file) if self._file is not None else None
        threading.Thread(
            target=_follow, args=(fd, file_fd, self.path), name="flowtaskd-output", daemon=True
        ).start()

    def pread(self, count: int, offset: int) -> bytes:
        """Read back from the log file (empty if none was created)."""
        if self._file is None or count <= 0:
            return b""
        try:
            return os.pread(self._file, count, offset)
        except OSError:
            return b""

    def close(self) -> None:
        """Release every descriptor; safe to call twice and on every path."""
        if self._closed:
            return
        self._closed = True
        self._unwatch()
        self._close_pipe()
        self._drop_child_end()
        if self._file is not None:
            os.close(self._file)
            self._file = None

    # -- moving bytes ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Readable while the child runs (our write end keeps EOF away): move what is there."""
        self._move()

    def _move(self) -> None:
        """Move what a readable pipe holds: one read(2) (it cannot block: the pipe is readable),
        or splice(2) told not to block, until the pipe is empty or a wake-up's worth is done."""
        try:
            if self._file is None or self.error is not None or _SPLICE is None:
                self._write(os.read(self._read, _READ))
                return
            for _ in range(_PUMPS_PER_WAKEUP):
                n = _SPLICE(self._read, self._file, _CHUNK, flags=_SPLICE_FLAGS)
                if n == 0:
                    return
                self.size += n
        except BlockingIOError:
            return
        except OSError as exc:  # splice into the file failed: go on draining, discard
            self._fail(exc)

    def _write(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        try:
            if self._file is None:
                os.makedirs(os.path.dirname(self.path) or ".", mode=0o750, exist_ok=True)
                self._file = os.open(self.path, _FILE_FLAGS, 0o640)  # raw output: not for all
            _write_all(self._file, data)
            self.size += len(data)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            reason = exc.strerror or str(exc)
            self.error = f"cannot write output file {self.path!r}: {reason}; output discarded"

    def _unwatch(self, *, closing: bool = True) -> None:
        """Stop watching; ``closing``: the pipe is closed right away (the kernel then drops it
        from the set by itself)."""
        if self._set is not None:
            if self._read >= 0:
                self._set.discard(self._read, closing=closing)
            self._set = None

    def _close_pipe(self) -> None:
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


def _poll_now(fd: int) -> int:
    """The poll(2) events of ``fd`` right now (0 if none)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ready = poller.poll(0)
    return ready[0][1] if ready else 0


def _follow(pipe: int, file_fd: int | None, path: str) -> None:
    """Thread: copy ``pipe`` into the file until every writer has closed it, then close both."""
    try:
        while True:
            data = os.read(pipe, _READ)
            if not data:
                return
            if file_fd is None:
                with contextlib.suppress(OSError):
                    os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
                    file_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            if file_fd is not None:
                with contextlib.suppress(OSError):
                    _write_all(file_fd, data)
    except OSError:
        return
    finally:
        os.close(pipe)
        if file_fd is not None:
            os.close(file_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
