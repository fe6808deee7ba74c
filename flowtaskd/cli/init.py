"""``flowtaskd init [DIR]``: lay out a working tree; ``--systemd``: a unit for this install.

The tree: ``DIR/flowtaskd.yaml`` (the example config, every option commented, its paths
made absolute so the daemon finds them from any working directory), ``DIR/tasks/hello.yaml``
(an example task) and ``DIR/inbox`` (drop a task file there to run it once); the state goes
to ``DIR/var``. With ``--systemd``, ``DIR/flowtaskd.service`` too: the packaged unit with
``ExecStart`` pointing at this installation's ``flowtaskd`` (a venv's included), the
config above, ``User=`` the invoking user and ``DIR`` writable inside the sandbox.
Existing files are never overwritten (``--force`` does).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["config_text", "register", "unit_text"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create a config, a task folder and an inbox (and a systemd unit)",
        description="Lay out a working tree: DIR/flowtaskd.yaml, DIR/tasks/hello.yaml, DIR/inbox.",
        epilog="examples:\n  flowtaskd init ~/flowtaskd\n"
        "  flowtaskd init /srv/flowtaskd --systemd --user flowtaskd",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dir", nargs="?", type=Path, default=Path(), metavar="DIR", help="where (default: .)"
    )
    p.add_argument(
        "--systemd",
        action="store_true",
        help="also write DIR/flowtaskd.service for this installation",
    )
    p.add_argument(
        "--user", default=None, help="User= of the unit (default: you; flowtaskd for root)"
    )
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(handler=cmd_init)


def _data(name: str) -> str:
    return (resources.files("flowtaskd") / "data" / name).read_text(encoding="utf-8")


def config_text(root: Path) -> str:
    """The example config with its task folder, state dir and inbox under ``root``."""
    text = _data("flowtaskd.yaml")
    text = text.replace("tasks:\n  - ./config/tasks\n", f"tasks:\n  - {root / 'tasks'}\n")
    text = text.replace("# state_dir: ./var\n", f"state_dir: {root / 'var'}\n")
    return text.replace(
        "# inboxes:\n#   - path: ./var/inbox\n",
        f"inboxes:\n  - path: {root / 'inbox'}\n",
    )


def _executable() -> str:
    """This installation's ``flowtaskd`` script (a venv's too), else ``python -m flowtaskd``."""
    beside = Path(sys.executable).parent / "flowtaskd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("flowtaskd")
    return found if found else f"{sys.executable} -m flowtaskd"


def unit_text(root: Path, config: Path, user: str) -> str:
    """The packaged unit, made to run this installation with ``config`` as ``user``."""
    lines = []
    for line in _data("flowtaskd.service").splitlines():
        if line.startswith("ExecStart="):
            lines.append(f"ExecStart={_executable()} run --config {config}")
        elif line.startswith("User="):
            lines.append(f"User={user}")
        elif line.startswith("Group="):
            lines.append(f"Group={user}")
        elif line.startswith("ReadWritePaths="):
            lines += [line, f"ReadWritePaths=-{root}"]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, force: bool, made: list[Path]) -> None:
    if path.exists() and not force:
        raise FileExistsError(path)
    path.write_text(text, encoding="utf-8")
    made.append(path)


def cmd_init(args: argparse.Namespace) -> int:
    from flowtaskd.cli.errors import EXIT_USAGE, fail  # noqa: PLC0415 - fast --help

    root = args.dir.expanduser().absolute()
    made: list[Path] = []
    try:
        for folder in (root, root / "tasks", root / "inbox"):
            folder.mkdir(parents=True, exist_ok=True)
        _write(root / "flowtaskd.yaml", config_text(root), args.force, made)
        _write(root / "tasks" / "hello.yaml", _data("hello.yaml"), args.force, made)
        if args.systemd:
            default = "flowtaskd" if os.geteuid() == 0 else getpass.getuser()
            unit = unit_text(root, root / "flowtaskd.yaml", args.user or default)
            _write(root / "flowtaskd.service", unit, args.force, made)
    except FileExistsError as exc:
        return fail(f"{exc} exists (--force overwrites it)", EXIT_USAGE)
    except OSError as exc:
        return fail(f"cannot write {exc.filename}: {exc.strerror}")
    for path in made:
        print(f"wrote {path}")
    print(f"\nstart it:  flowtaskd run --config {root / 'flowtaskd.yaml'}")
    print(f"run once:  cp {root / 'tasks' / 'hello.yaml'} {root / 'inbox'}/")
    if args.systemd:
        print(
            f"install:   sudo install -m 0644 {root / 'flowtaskd.service'} /etc/systemd/system/"
            "\n           sudo systemctl daemon-reload && sudo systemctl enable --now flowtaskd"
        )
    return 0
