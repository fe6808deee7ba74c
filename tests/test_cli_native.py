"""The CLI's conventions: --version, help with examples, lazy imports, completion, the man
page, ``init``, and the packaged copies of the config, the unit and the example task."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowtaskd.cli import build_parser
from flowtaskd.cli.init import config_text, unit_text
from flowtaskd.cli.model import GRAPH_FORMATS, TASK_SUFFIXES
from flowtaskd.cli.shell import manpage
from flowtaskd.core.loader import TASK_SUFFIXES as CORE_SUFFIXES
from flowtaskd.core.render import FORMATS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "flowtaskd" / "data"


def flowtaskd(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowtaskd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version() -> None:
    run = flowtaskd("--version")
    assert run.returncode == 0 and run.stdout.startswith("flowtaskd 0.")


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_documents_every_argument_and_has_an_example(name: str) -> None:
    parser = _commands()[name]
    for action in parser._actions:
        assert action.help, f"{name}: {action.dest} has no help line"
    assert parser.epilog and "flowtaskd " in parser.epilog, f"{name}: no example"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from flowtaskd.cli import build_parser; build_parser();"
        "heavy = [m for m in ('pydantic', 'asyncio', 'httpx', 'structlog', 'yaml',"
        " 'flowtaskd.core', 'flowtaskd.daemon', 'flowtaskd.engine', 'prometheus_client')"
        " if m in sys.modules];"
        "print(heavy)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == "[]"


def test_the_parser_copies_of_core_constants_agree() -> None:
    assert set(TASK_SUFFIXES) == set(CORE_SUFFIXES)
    assert tuple(GRAPH_FORMATS) == tuple(FORMATS)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    run = flowtaskd("completion", shell)
    assert run.returncode == 0 and "_ARGCOMPLETE" in run.stdout and "flowtaskd" in run.stdout


def test_completion_answers_commands_from_the_parser(tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = "flowtaskd tr"
    run = subprocess.run(
        [sys.executable, "-m", "flowtaskd"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        },
    )
    assert run.returncode == 0, run.stderr
    assert out.read_text().split() == ["trigger"]


def test_the_shipped_man_page_is_current() -> None:
    assert (DATA / "flowtaskd.1").read_text() == manpage(build_parser()), (
        "flowtaskd/data/flowtaskd.1 is stale: `flowtaskd man > flowtaskd/data/flowtaskd.1`"
    )
    man = shutil.which("man")
    if man is not None:
        run = subprocess.run(
            [man, "-l", str(DATA / "flowtaskd.1")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"},
        )
        assert run.returncode == 0 and "trigger" in run.stdout and "EXAMPLES" in run.stdout


@pytest.mark.parametrize(
    ("data", "repo"),
    [
        ("flowtaskd.yaml", "config/flowtaskd.yaml"),
        ("flowtaskd.service", "systemd/flowtaskd.service"),
        ("hello.yaml", "config/tasks/hello.yaml"),
    ],
)
def test_the_packaged_copies_match_the_repository(data: str, repo: str) -> None:
    assert (DATA / data).read_text() == (REPO / repo).read_text(), f"cp {repo} flowtaskd/data/"


def test_init_lays_out_a_tree_the_daemon_accepts(tmp_path: Path) -> None:
    run = flowtaskd("init", str(tmp_path / "site"))
    assert run.returncode == 0, run.stderr
    site = tmp_path / "site"
    checked = flowtaskd("validate", str(site / "tasks"))
    assert checked.returncode == 0, checked.stderr
    # the config loads as the daemon would read it, its paths under the tree
    code = (
        "import json, sys; from flowtaskd.daemon.config.load import load_config;"
        "c = load_config(sys.argv[1]);"
        "print(json.dumps([str(c.state_dir), [str(t) for t in c.tasks],"
        " [str(i.path) for i in c.inboxes]]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(site / "flowtaskd.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd="/",
    )
    state, tasks, inboxes = json.loads(loaded.stdout)
    assert state == str(site / "var")
    assert (tasks, inboxes) == ([str(site / "tasks")], [str(site / "inbox")])
    refused = flowtaskd("init", str(site))
    assert refused.returncode == 2 and refused.stderr.startswith("flowtaskd: ")


def test_config_text_and_unit_text(tmp_path: Path) -> None:
    text = config_text(tmp_path)
    assert f"  - {tmp_path / 'tasks'}\n" in text and "./config/tasks\n" not in text
    unit = unit_text(tmp_path, tmp_path / "flowtaskd.yaml", "alice").splitlines()
    assert [line for line in unit if line.startswith(("User=", "Group="))] == [
        "User=alice",
        "Group=alice",
    ]
    assert f"ReadWritePaths=-{tmp_path}" in unit
    (exec_start,) = [line for line in unit if line.startswith("ExecStart=")]
    assert exec_start.endswith(f" run --config {tmp_path / 'flowtaskd.yaml'}")


def test_errors_start_with_the_program_name(tmp_path: Path) -> None:
    for args in (
        ["show", "nope", "--state-dir", str(tmp_path)],
        ["next", "61 * * * *"],
        ["graph", str(tmp_path / "absent.yaml")],
        ["exec", str(tmp_path / "absent.yaml")],
    ):
        run = flowtaskd(*args, cwd=tmp_path)
        assert run.returncode in (1, 2) and run.stderr.startswith("flowtaskd: "), (args, run)
        assert "Traceback" not in run.stderr
