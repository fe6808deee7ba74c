"""Commands that talk to a running daemon over its control socket.

``flowtaskd status``, ``tasks``, ``trigger NAME [-p key=value ...] [--wait]``,
``cancel RUN_ID``, ``reload`` and ``events``. Each finds the socket from ``--socket PATH``,
else from the config (``--config FILE``, else the defaults: ``./var/control.sock``).
``events`` always follows the live stream (the daemon keeps no backlog of events; past runs
are in ``flowtaskd history``) until Ctrl-C or the daemon stops; ``--follow`` is accepted
for familiarity.

Exit codes (:mod:`flowtaskd.cli.errors`, the same for every command): 0 success; 1 the
daemon refused the request (unknown task, ambiguous run id, a skipped run) or ``trigger
--wait``'s run failed; 2 usage (bad ``-p``, an invalid config); 3 the daemon could not be
reached or closed the connection. Errors are one line on stderr, never a traceback. The
client uses plain blocking sockets: it is a CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from flowtaskd.cli.errors import EXIT_UNREACHABLE, EXIT_USAGE, CliError, plural

__all__ = [
    "CliError",
    "Client",
    "checked",
    "common_options",
    "parse_params",
    "register",
    "socket_path",
    "span",
]

_REPLY_TIMEOUT = 60.0
_CONNECT_PATIENCE = 3.0  # seconds a full listen backlog is waited out


_CliError = CliError  # the name the commands here raise


class _Unreachable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_UNREACHABLE)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show the running daemon's state",
        epilog="example:\n  flowtaskd status --json | jq .runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.set_defaults(handler=_run(_cmd_status))

    p = sub.add_parser(
        "tasks",
        help="list the tasks the running daemon has loaded",
        epilog="example:\n  flowtaskd tasks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.set_defaults(handler=_run(_cmd_tasks))

    p = sub.add_parser(
        "trigger",
        help="run a loaded task now",
        epilog="examples:\n  flowtaskd trigger hello -p who=you\n"
        "  flowtaskd trigger nightly -p days:=3 --wait",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", metavar="NAME", help="a loaded task's name").completer = _complete_tasks
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a run param (repeatable); KEY:=JSON for a number, list, true, ...",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for the run; exit 0 if done, 1 otherwise"
    )
    p.add_argument(
        "-v", "--show-output", action="store_true", help="with --wait: stream the steps' output"
    )
    _common(p)  # the handler: flowtaskd.cli.oncall (it follows the run in the live view)

    p = sub.add_parser(
        "cancel",
        help="cancel a running or queued run",
        epilog="example:\n  flowtaskd cancel 019b7c40",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_id", metavar="RUN_ID", help="a run id or a unique prefix"
    ).completer = _complete_active_runs
    _common(p)
    p.set_defaults(handler=_run(_cmd_cancel))

    p = sub.add_parser(
        "reload",
        help="re-read the config and rescan the task folders",
        epilog="example:\n  flowtaskd reload     # the same as systemctl reload flowtaskd",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.set_defaults(handler=_run(_cmd_reload))

    p = sub.add_parser(
        "events",
        help="stream live lifecycle events (until Ctrl-C)",
        epilog="examples:\n  flowtaskd events --task nightly\n"
        "  flowtaskd events --event step_error,completed --json | jq .",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="accepted for familiarity: always follows"
    )
    p.add_argument("--task", default=None, help="only events of this task")
    p.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="EVENT",
        help="only these events (repeatable, or comma-separated)",
    )
    _common(p)
    p.set_defaults(handler=_run(_cmd_events))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", type=Path, default=None, help="the daemon's control socket")
    p.add_argument("--config", type=Path, default=None, help="the daemon's config file")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON replies")


def _ask_quietly(args: argparse.Namespace, cmd: str) -> dict[str, Any]:
    """For shell completion: the daemon's reply to ``cmd`` within a second, or {}."""
    try:
        with _Client(_socket_path(args)) as client:
            client.sock.settimeout(1.0)
            return client.request({"cmd": cmd})
    except Exception:
        return {}


def _complete_tasks(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    names = [t["name"] for t in _ask_quietly(parsed_args, "tasks").get("tasks", [])]
    return [n for n in names if n.startswith(prefix)]


def _complete_active_runs(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    runs = _ask_quietly(parsed_args, "status").get("runs", {})
    ids = [r.get("run_id", "") for r in [*runs.get("active", []), *runs.get("queued", [])]]
    return [i for i in ids if i.startswith(prefix)]


def _run(command: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        try:
            code: int = command(args)
        except _CliError as exc:
            print(f"flowtaskd: {exc}", file=sys.stderr)
            return exc.code
        return code

    return handler


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    from flowtaskd.daemon.config.load import load_config  # noqa: PLC0415 - fast --help
    from flowtaskd.errors import FlowtaskError, TaskParseError  # noqa: PLC0415

    try:
        path: Path = load_config(args.config).control.socket
    except TaskParseError as exc:
        lines = [str(p) for p in exc.problems] or [str(exc)]
        raise _CliError("; ".join(lines), EXIT_USAGE) from None
    except FlowtaskError as exc:
        raise _CliError(str(exc), EXIT_USAGE) from None
    return path


def _connect(path: Path) -> socket.socket:
    """A connected socket. A full listen backlog (EAGAIN: a burst of clients) is retried
    for up to :data:`_CONNECT_PATIENCE` seconds before the daemon counts as unreachable."""
    deadline = time.monotonic() + _CONNECT_PATIENCE
    delay = 0.005
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_REPLY_TIMEOUT)
    try:
        while True:
            try:
                sock.connect(os.fspath(path))
            except BlockingIOError:  # a Unix socket may try again after EAGAIN
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            return sock
    except BaseException:
        sock.close()
        raise


class _Client:
    """One connection to the control socket: JSON lines out, JSON lines in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sent: list[bytes] = []  # resent if the daemon was too busy to take us
        self._replies = 0
        self._patience = time.monotonic() + _CONNECT_PATIENCE
        self._open()

    def _open(self) -> None:
        path = self.path
        try:
            self.sock = _connect(path)
        except PermissionError:
            raise _Unreachable(f"cannot reach the daemon at {path}: permission denied") from None
        except OSError:
            raise _Unreachable(f"cannot reach the daemon at {path} (is it running?)") from None
        self.file = self.sock.makefile("rb")

    def _again(self, refused: dict[str, Any]) -> bool:
        """The daemon refused this connection (``busy``: too many open): reconnect and send
        again, within the connect patience. False when it is too late."""
        if not refused.get("busy") or self._replies or time.monotonic() >= self._patience:
            return False
        self.file.close()
        self.sock.close()
        time.sleep(0.05)
        self._open()
        try:
            for data in self._sent:
                self.sock.sendall(data)
        except OSError:
            pass  # refused again: the reply says so
        return True

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.sock.close()

    def send(self, request: dict[str, Any]) -> None:
        data = json.dumps(request).encode() + b"\n"
        if not self._replies:
            self._sent.append(data)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            if not self._replies:
                return  # maybe refused: the first receive reads why, and tries again
            raise _Unreachable(f"lost the connection to the daemon at {self.path}: {exc}") from None

    def receive(self, *, follow: bool = False) -> dict[str, Any] | None:
        """The next JSON line (None at end of stream when ``follow``)."""
        while True:
            reply = self._receive(follow=follow)
            if reply is None or not self._again(reply):
                self._replies += 1
                return reply

    def _receive(self, *, follow: bool) -> dict[str, Any] | None:
        if follow:
            self.sock.settimeout(None)
        try:
            line = self.file.readline()
        except TimeoutError:
            raise _Unreachable(
                f"no reply from the daemon at {self.path} within {_REPLY_TIMEOUT:g}s"
            ) from None
        except OSError as exc:
            raise _Unreachable(f"lost the connection to the daemon at {self.path}: {exc}") from None
        if not line:
            if follow:
                return None
            raise _Unreachable(f"the daemon at {self.path} closed the connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise _CliError(f"the daemon at {self.path} sent a line that is not JSON") from None
        if not isinstance(reply, dict):
            raise _CliError(f"the daemon at {self.path} sent {line[:80]!r}")
        return reply

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        reply = self.receive()
        assert reply is not None
        return _checked(reply)


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        raise _CliError(str(reply.get("error") or "the daemon refused the request"))
    return reply


def _print_json(obj: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# -- commands ---------------------------------------------------------------------------
def _cmd_status(args: argparse.Namespace) -> int:
    with _Client(_socket_path(args)) as client:
        st = client.request({"cmd": "status"})
    if args.json:
        _print_json(st)
        return 0
    runs = st["runs"]
    print(
        f"flowtaskd {st['version']}, pid {st['pid']}, up {_span(st['uptime'])},"
        f" state dir {st['state_dir']}"
    )
    invalid = f", {st['invalid']} invalid (see flowtaskd tasks)" if st["invalid"] else ""
    print(f"tasks: {st['tasks']} loaded{invalid}")
    print(
        f"runs:  {len(runs['active'])} running,"
        f" {runs.get('queued_count', len(runs['queued']))} queued,"
        f" {runs['completed']} finished since start"
    )
    for r in runs["active"]:
        print(f"  running  {r['run_id']}  {r['task']}  {_span(r['running_for'])}  ({r['trigger']})")
    for r in runs["queued"]:
        print(f"  queued   {r['run_id']}  {r['task']}  ({r['trigger']})")
    if runs.get("queued_truncated"):
        print(f"  ... {runs['queued_count'] - len(runs['queued'])} more queued")
    fires = st["next_fire_times"]
    if fires:
        print("next fire times:")
        width = max(len(k) for k in fires)
        for key, when in sorted(fires.items(), key=lambda kv: kv[1] or "~"):
            print(f"  {key:<{width}}  {when or 'paused'}")
    if st.get("paused"):
        print(f"paused: {', '.join(st['paused'])} (schedule fires are skipped)")
    ctl = st["control"]
    print(f"subscribers: {ctl['subscribers']} ({ctl['dropped_subscribers']} dropped)")
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    with _Client(_socket_path(args)) as client:
        reply = client.request({"cmd": "tasks"})
    if args.json:
        _print_json(reply)
        return 0
    tasks, invalid = reply["tasks"], reply["invalid"]
    if not tasks:
        print("no tasks loaded")
    else:
        width = max(4, *(len(t["name"]) for t in tasks))
        print(f"{'NAME':<{width}}  STEPS  SCHEDULE         FILE")
        for t in tasks:
            sched = ", ".join(t["schedules"]) or "-"
            if t.get("paused"):
                sched += " (paused)"
            print(f"{t['name']:<{width}}  {t['steps']:>5}  {sched:<15}  {t['file']}")
            if t.get("description"):
                print(f"{'':<{width}}         {t['description']}")
    from flowtaskd.errors import Problem  # noqa: PLC0415

    for bad in invalid:
        print(f"invalid: {bad['file']}")
        for p in bad["problems"]:
            print(f"  {Problem(**p)}")
    return 0


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise _CliError(f"-p {pair!r}: write KEY=VALUE (or KEY:=JSON)", EXIT_USAGE)
        if key.endswith(":"):
            try:
                params[key[:-1]] = json.loads(value)
            except ValueError:
                message = f"-p {pair!r}: the value after := is not JSON"
                raise _CliError(message, EXIT_USAGE) from None
        else:
            params[key] = value
    return params


def _cmd_cancel(args: argparse.Namespace) -> int:
    with _Client(_socket_path(args)) as client:
        reply = client.request({"cmd": "cancel", "run_id": args.run_id})
    if args.json:
        _print_json(reply)
    else:
        print(f"cancelled run {reply['run_id']} (it was {reply['was']})")
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    with _Client(_socket_path(args)) as client:
        reply = client.request({"cmd": "reload"})
    if args.json:
        _print_json(reply)
        return 0
    invalid = reply.get("invalid", 0)
    line = f"reloaded: {plural(reply['tasks'], 'task')} loaded"
    if invalid:
        line += f", {plural(invalid, 'invalid file')} (flowtaskd tasks shows the problems)"
    print(line)
    if reply.get("restart_needed"):
        changed = ", ".join(reply["restart_needed"])
        print(f"flowtaskd: restart the daemon to apply changes to: {changed}", file=sys.stderr)
    return 0


def _event_line(e: dict[str, Any]) -> str:
    ts = e.get("ts")
    when = datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3] if ts else "--:--:--.---"
    parts = [when, f"{e.get('event', '?'):<15}", str(e.get("task") or "-")]
    if e.get("run_id"):
        parts.append(str(e["run_id"]))
    if e.get("step"):  # a group member's item as step[i], as everywhere
        item = e.get("item")
        parts.append(str(e["step"]) + (f"[{item}]" if item is not None else ""))
    details = [
        f"{key}={e[key]}"
        for key in ("status", "attempt", "exit_code", "reason", "error")
        if e.get(key) not in (None, "")
    ]
    return "  ".join(parts + details)


def _cmd_events(args: argparse.Namespace) -> int:
    names = [n.strip() for arg in args.event for n in arg.split(",") if n.strip()]
    request: dict[str, Any] = {"cmd": "subscribe"}
    if names:
        request["events"] = names
    if args.task:
        request["task"] = args.task
    with _Client(_socket_path(args)) as client:
        client.request(request)
        try:
            while (event := client.receive(follow=True)) is not None:
                if args.json:
                    _print_json(event)
                else:
                    print(_event_line(event), flush=True)
        except KeyboardInterrupt:
            return 0
    print("flowtaskd: the daemon closed the event stream", file=sys.stderr)
    return 0


# the names the other command modules (oncall, follow) use
Client = _Client
checked = _checked
common_options = _common
parse_params = _params
socket_path = _socket_path
span = _span
