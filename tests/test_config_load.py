"""flowtaskd.daemon.config.load: loading a config file, its derived defaults, the checks
between entries, and every problem at once as FILE:LINE: key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowtaskd.daemon.config.load import config_summary, default_config, load_config
from flowtaskd.errors import ConfigError
from tests.conftest import write

ENV = {"HOME": "/home/u"}


def _load(tmp_path: Path, text: str, name: str = "flowtaskd.yaml", **env: str) -> object:
    path = write(tmp_path / name, text)
    return load_config(path, environ={**ENV, **env}, cwd=tmp_path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, text)
    return [str(p) for p in exc.value.problems]


def test_defaults_derive_from_the_state_dir(tmp_path: Path) -> None:
    cfg = default_config(environ=ENV, cwd=tmp_path)
    var = tmp_path / "var"
    assert cfg.state_dir == var
    assert cfg.tasks == [tmp_path / "config" / "tasks"]
    assert [(i.name, i.path, i.archive) for i in cfg.inboxes] == [
        ("inbox", var / "inbox", var / "archive" / "inbox")
    ]
    assert cfg.history.path == var / "history.db"
    assert cfg.control.socket == var / "control.sock"
    assert cfg.web.token_file == var / "web-token"
    assert load_config(None, environ=ENV, cwd=tmp_path) == cfg


def test_systemd_directories(tmp_path: Path) -> None:
    env = {**ENV, "STATE_DIRECTORY": "/var/lib/flowtaskd", "RUNTIME_DIRECTORY": "/run/flowtaskd"}
    cfg = default_config(environ=env, cwd=tmp_path)
    assert cfg.state_dir == Path("/var/lib/flowtaskd")
    assert cfg.history.path == Path("/var/lib/flowtaskd/history.db")
    assert cfg.control.socket == Path("/run/flowtaskd/control.sock")


def test_relative_paths_resolve_against_cwd_not_the_file(tmp_path: Path) -> None:
    text = "state_dir: st\ntasks: [lib, ~/more]\ninboxes:\n  - path: drops\n"
    cfg = _load(tmp_path, text, name="etc/flowtaskd.yaml")
    assert cfg.state_dir == tmp_path / "st"  # type: ignore[attr-defined]
    assert cfg.tasks == [tmp_path / "lib", Path("/home/u/more")]  # type: ignore[attr-defined]
    (inbox,) = cfg.inboxes  # type: ignore[attr-defined]
    assert (inbox.name, inbox.archive) == ("drops", tmp_path / "st" / "archive" / "drops")


def test_an_empty_section_means_its_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "history:\ncontrol:\nweb:\n")
    assert cfg.history.path == tmp_path / "var" / "history.db"  # type: ignore[attr-defined]
    assert cfg.web.enabled is True  # type: ignore[attr-defined]
    assert _load(tmp_path, "web: false\n").web.enabled is False  # type: ignore[attr-defined]


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == default_config(environ=ENV, cwd=tmp_path)


def test_toml_works_too(tmp_path: Path) -> None:
    cfg = _load(tmp_path, 'state_dir = "st"\n[history]\nretention_days = 2\n', name="c.toml")
    assert cfg.history.retention_days == 2 and cfg.state_dir == tmp_path / "st"  # type: ignore[attr-defined]


def test_every_problem_at_once_with_line_and_hint(tmp_path: Path) -> None:
    text = "history:\n  retenton_days: 3\nconcurrency:\n  max_runs: 0\nshutdown_grace: soon\n"
    got = _problems(tmp_path, text)
    file = tmp_path / "flowtaskd.yaml"
    assert (
        got[0] == f"{file}:2: history.retenton_days: unknown key (did you mean `retention_days`?)"
    )
    assert got[1].startswith(f"{file}:4: concurrency.max_runs: ")
    assert got[2].startswith(f"{file}:5: shutdown_grace: ")
    assert len(got) == 3


def test_clashes_between_entries_name_their_keys(tmp_path: Path) -> None:
    text = (
        "tasks: [lib]\n"
        "inboxes:\n"
        "  - {path: a, name: x}\n"
        "  - {path: b, name: x}\n"
        "  - {path: lib/in}\n"
        "schedules:\n"
        "  - {task: t, cron: '@daily'}\n"
        "  - {task: t, cron: '@daily'}\n"
    )
    got = "\n".join(_problems(tmp_path, text))
    assert ":4: inboxes[1].name: 'x' is inboxes[0]'s name too" in got
    assert ":5: inboxes[2].path: overlaps tasks[0] (" in got
    assert ":8: schedules[1].id: 't (@daily)' is schedules[0]'s id too (give each an `id`)" in got


def test_an_archive_inside_a_watched_folder(tmp_path: Path) -> None:
    got = _problems(tmp_path, "inboxes:\n  - {path: in, archive: in/done}\n")
    assert any(
        "inboxes[0].archive: lies inside inboxes[0]: files would run again" in p for p in got
    )


def test_not_a_mapping(tmp_path: Path) -> None:
    got = _problems(tmp_path, "- a\n- b\n")
    assert got == [f"{tmp_path / 'flowtaskd.yaml'}:1: the config is a mapping of options, got list"]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(Path("missing.yaml"), environ=ENV, cwd=tmp_path)
    assert str(exc.value) == f"{tmp_path / 'missing.yaml'}: config file not found (check --config)"
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path / "c.ini", "x"), environ=ENV, cwd=tmp_path)
    assert (
        str(exc.value)
        == f"{tmp_path / 'c.ini'}: unsupported config file type ('.ini') (use .yaml, .yml or .toml)"
    )
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: YAML syntax error"):
        _load(tmp_path, "a: [\n", name="c.yaml")


def test_summary_hides_secrets(tmp_path: Path) -> None:
    text = (
        "webhooks:\n"
        "  - url: 'https://bob:pa55word@hooks.example/x?token=t0ken'\n"
        "    secret: s3cret\n"
        "    signing: github\n"
        "web:\n  tokens: [{sha256: '" + "ab" * 32 + "'}]\n"
    )
    summary = config_summary(_load(tmp_path, text))  # type: ignore[arg-type]
    dumped = str(summary)
    for secret in ("pa55word", "t0ken", "s3cret", "ab" * 32):
        assert secret not in dumped
    assert summary["webhooks"][0]["url"] == "https://bob:***@hooks.example/x?***"
    assert summary["webhooks"][0]["secret"] == "***"
    assert summary["web"]["tokens"] == [{"sha256": "***", "file": None}]
    assert summary["state_dir"] == str(tmp_path / "var")
