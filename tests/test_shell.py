"""``flowtaskd.cli.shell``: ``flowtaskd completion SHELL`` (the script a real bash runs to
complete) and ``flowtaskd man`` (roff made from the parser, escaped for roff)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flowtaskd.cli import build_parser, main
from flowtaskd.cli.shell import SHELLS, manpage
from tests.daemon_harness import FLOWTASKD


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nospace -o default -o bashdefault -F _python_argcomplete flowtaskd"),
        ("zsh", "#compdef flowtaskd"),
        ("fish", "function __fish_flowtaskd_complete"),
    ],
)
def test_completion_prints_the_shells_script_for_flowtaskd(
    shell: str, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert marker in _out(capsys, "completion", shell)


def test_only_the_three_shells_are_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert SHELLS == ("bash", "zsh", "fish")
    with pytest.raises(SystemExit) as caught:
        main(["completion", "tcsh"])
    assert caught.value.code == 2
    assert "invalid choice: 'tcsh'" in capsys.readouterr().err


def _bash_complete(script: str, line: str, cwd: Path) -> list[str]:
    """What bash's completion offers for ``line`` with ``script`` loaded."""
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}';"
        " COMP_POINT=${#COMP_LINE}; COMP_TYPE=9;"
        ' _python_argcomplete flowtaskd; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{Path(FLOWTASKD).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_choices_with_the_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _out(capsys, "completion", "bash")
    assert _bash_complete(script, "flowtaskd completion z", tmp_path) == ["zsh"]
    assert _bash_complete(script, "flowtaskd backf", tmp_path) == ["backfill"]


def test_man_is_roff_with_every_command_its_options_and_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = _out(capsys, "man")
    assert page == manpage(build_parser())
    lines = page.splitlines()
    assert lines[0] == '.TH FLOWTASKD 1 "" "flowtaskd" "User Commands"'
    commands = [line.removeprefix(".SS ") for line in lines if line.startswith(".SS ")]
    for name in ("run", "history", "init", "render", "show", "logs", "retry", "man"):
        assert name in commands
    show = lines.index(".SS show")
    assert "\\fB\\-\\-json\\fR" in lines[show : show + 20]  # options, dashes escaped
    assert "\\fBrun_id\\fR" in lines[show : show + 20]  # a positional by its name
    assert lines[lines.index(".SH EXAMPLES") + 1] == ".nf"


def _tiny(description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x", description=description, epilog="e.g. x go")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    go = sub.add_parser("go", help="go now", epilog=epilog)
    go.add_argument("--level", metavar="N", help="how far")
    go.add_argument("--quiet", action="store_true", help="say less")
    go.add_argument("--secret", help=argparse.SUPPRESS)
    return parser


def test_roff_escapes_backslashes_dashes_and_leading_dots() -> None:
    page = manpage(_tiny("a\\b uses -x\n.not a request\n'nor this", epilog=".x\nplain"))
    lines = page.splitlines()
    description = lines.index(".SH DESCRIPTION") + 1
    assert lines[description : description + 3] == [
        "a\\eb uses \\-x",
        "\\&.not a request",
        "\\&'nor this",
    ]
    go = lines.index(".SS go")
    assert lines[go + 1] == "go now"
    assert ".TP" in lines[go:] and "\\fB\\-\\-level N\\fR" in lines[go:]
    assert "\\fB\\-\\-quiet\\fR" in lines[go:]  # a flag takes no metavar
    assert not any("secret" in line for line in lines)  # hidden options stay hidden
    nf = lines.index(".nf", go)
    assert lines[nf + 1 : nf + 4] == ["\\&.x", "plain", ".fi"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_groff_renders_the_page_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    page = _out(capsys, "man")
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww"],
        input=page,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "flowtaskd completion fish" in done.stdout.replace("\u2010", "-")
