"""The daemon config: defaults, environment, path resolution, formats, every validation rule."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pydantic
import pytest

from flowtaskd.daemon.config.load import (
    DaemonConfig,
    InboxConfig,
    MetricsConfig,
    ScheduleConfig,
    config_summary,
    default_config,
    load_config,
)
from flowtaskd.errors import ConfigError, TaskParseError

REPO = Path(__file__).resolve().parent.parent
NO_ENV: dict[str, str] = {}


def _write(folder: Path, text: str, name: str = "flowtaskd.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _load(tmp_path: Path, text: str, name: str = "flowtaskd.yaml") -> DaemonConfig:
    return load_config(_write(tmp_path, text, name), environ=NO_ENV, cwd=tmp_path)


def _problems(tmp_path: Path, text: str, name: str = "flowtaskd.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text, name)
    return [str(problem) for problem in caught.value.problems]


# --- defaults and the environment ------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(None, environ=NO_ENV, cwd=tmp_path)
    assert cfg == default_config(environ=NO_ENV, cwd=tmp_path)
    assert cfg.state_dir == tmp_path / "var"
    assert cfg.tasks == [tmp_path / "config" / "tasks"]
    (inbox,) = cfg.inboxes
    assert (inbox.path, inbox.name) == (tmp_path / "var" / "inbox", "inbox")
    assert inbox.archive == tmp_path / "var" / "archive" / "inbox"
    assert cfg.history.path == tmp_path / "var" / "history.db"
    assert (cfg.history.retention_days, cfg.history.max_runs_per_task) == (30, 1000)
    assert cfg.control.socket == tmp_path / "var" / "control.sock"
    assert cfg.control.mode == 0o660
    assert cfg.schedules == [] and cfg.webhooks == [] and cfg.subscribers == []
    assert cfg.concurrency.max_runs == 8 and cfg.concurrency.max_queued == 10000
    assert cfg.concurrency.default_max_active_runs == 1
    assert cfg.concurrency.default_max_active_steps == 16
    assert (cfg.executor.kind, cfg.executor.on_unreachable) == ("local", "fail")
    assert (cfg.log.format, cfg.log.level) == ("auto", "info")
    assert cfg.metrics.listen is None and cfg.metrics.address is None
    assert (cfg.shutdown_grace, cfg.kill_grace) == (30.0, 5.0)
    assert cfg.security.trust_all_files is False and cfg.security.python_allow is None


def test_systemd_directories_are_honoured(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/flowtaskd:/var/lib/other", "RUNTIME_DIRECTORY": "/run/f"}
    cfg = default_config(environ=env, cwd=tmp_path)
    assert cfg.state_dir == Path("/var/lib/flowtaskd")
    assert cfg.inboxes[0].path == Path("/var/lib/flowtaskd/inbox")
    assert cfg.inboxes[0].archive == Path("/var/lib/flowtaskd/archive/inbox")
    assert cfg.history.path == Path("/var/lib/flowtaskd/history.db")
    assert cfg.control.socket == Path("/run/f/control.sock")
    assert cfg.tasks == [tmp_path / "config" / "tasks"]
    with pytest.raises(ConfigError, match=r"^<defaults>: control\.socket: a socket path has"):
        default_config(environ={"STATE_DIRECTORY": "/" + "x" * 120}, cwd=tmp_path)


def test_state_dir_in_the_file_beats_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, "state_dir: /srv/state\n")
    cfg = load_config(path, environ={"STATE_DIRECTORY": "/var/lib/x"}, cwd=tmp_path)
    assert cfg.state_dir == Path("/srv/state")
    assert cfg.history.path == Path("/srv/state/history.db")
    assert cfg.inboxes[0].archive == Path("/srv/state/archive/inbox")


def test_relative_paths_resolve_against_cwd_not_the_file(tmp_path: Path) -> None:
    etc, work = tmp_path / "etc", tmp_path / "work"
    etc.mkdir()
    path = _write(
        etc,
        """
        state_dir: state
        tasks: [lib, ~/more, /abs/lib]
        inboxes:
          - path: drops/in
          - path: ./other
            name: second
            archive: done
        history: {path: ~/h.db}
        """,
    )
    cfg = load_config(path, environ={"HOME": "/home/u"}, cwd=work)
    assert cfg.state_dir == work / "state"
    assert cfg.tasks == [work / "lib", Path("/home/u/more"), Path("/abs/lib")]
    first, second = cfg.inboxes
    assert (first.path, first.name, first.archive) == (
        work / "drops" / "in",
        "in",
        work / "state" / "archive" / "in",
    )
    assert (second.path, second.name, second.archive) == (work / "other", "second", work / "done")
    assert cfg.history.path == Path("/home/u/h.db")
    assert cfg.control.socket == work / "state" / "control.sock"


def test_relative_config_path_is_found_from_cwd(tmp_path: Path) -> None:
    _write(tmp_path, "log: {level: debug}\n")
    cfg = load_config(Path("flowtaskd.yaml"), environ=NO_ENV, cwd=tmp_path)
    assert cfg.log.level == "debug"


def test_empty_files_and_empty_sections_mean_defaults(tmp_path: Path) -> None:
    defaults = default_config(environ=NO_ENV, cwd=tmp_path)
    assert _load(tmp_path, "# only comments\n") == defaults
    assert _load(tmp_path, "", "empty.toml") == defaults
    text = "state_dir:\ntasks:\ninboxes:\nhistory:\n  # retention_days: 7\ncontrol:\nmetrics:\n"
    assert _load(tmp_path, text) == defaults


def test_yaml_and_toml_say_the_same(tmp_path: Path) -> None:
    yaml_cfg = _load(
        tmp_path,
        """
        tasks: [lib]
        inboxes:
          - path: in
            params: {kind: drop}
        schedules:
          - task: nightly
            cron: "0 3 * * *"
            timezone: Europe/Berlin
          - command: [echo, hi]
            every: 5m
            env: {N: 1}
        control: {mode: "0640"}
        executor: {kind: dask, local: {n_workers: 3}}
        webhooks:
          - url: https://example.com/hook
            events: [completed, task_invalid]
        """,
    )
    toml_cfg = _load(
        tmp_path,
        """
        tasks = ["lib"]
        [[inboxes]]
        path = "in"
        params = {kind = "drop"}
        [[schedules]]
        task = "nightly"
        cron = "0 3 * * *"
        timezone = "Europe/Berlin"
        [[schedules]]
        command = ["echo", "hi"]
        every = "5m"
        env = {N = 1}
        [control]
        mode = 0o640
        [executor]
        kind = "dask"
        local = {n_workers = 3}
        [[webhooks]]
        url = "https://example.com/hook"
        events = ["completed", "task_invalid"]
        """,
        "flowtaskd.toml",
    )
    assert yaml_cfg == toml_cfg
    nightly, echo = toml_cfg.schedules
    assert nightly.id == "nightly (0 3 * * *)"
    assert echo.id == "echo hi (every 5m)" and echo.every == 300.0
    assert echo.interval is not None and echo.interval.total_seconds() == 300
    assert echo.env == {"N": "1"}
    assert toml_cfg.control.mode == 0o640
    assert toml_cfg.executor.local is not None and toml_cfg.executor.local.n_workers == 3


@pytest.mark.parametrize("written", ["mode: 0660", "mode: '0660'", "mode: '0o660'", "mode: 432"])
def test_control_mode_is_octal(tmp_path: Path, written: str) -> None:
    assert _load(tmp_path, f"control:\n  {written}\n").control.mode == 0o660


def test_schedule_ids_do_not_depend_on_order(tmp_path: Path) -> None:
    a = "  - {task: a, cron: '@daily'}\n"
    b = "  - {task: b, every: 1h, id: hourly-b}\n"
    one = _load(tmp_path, "schedules:\n" + a + b).schedules
    two = _load(tmp_path, "schedules:\n" + b + a).schedules
    assert {s.id for s in one} == {s.id for s in two} == {"a (@daily)", "hourly-b"}


def test_models_are_frozen_and_work_alone(tmp_path: Path) -> None:
    cfg = default_config(environ=NO_ENV, cwd=tmp_path)
    with pytest.raises(pydantic.ValidationError):
        cfg.log.level = "debug"  # type: ignore[misc]
    direct = DaemonConfig(state_dir=Path("/srv/state"), inboxes=[{"path": "/srv/drop"}])
    assert direct.inboxes[0].archive == Path("/srv/state/archive/drop")
    assert direct.history.path == Path("/srv/state/history.db")
    inbox = InboxConfig(path=Path("/srv/in"))
    assert inbox.name == "in" and inbox.archive.parts[-2:] == ("archive", "in")
    assert ScheduleConfig(command="backup --all", cron="0 1 * * *").id == "backup --all (0 1 * * *)"
    assert MetricsConfig(listen="[::1]:9464").address == ("::1", 9464)
    assert MetricsConfig(listen="127.0.0.1:0").address == ("127.0.0.1", 0)


# --- problems -------------------------------------------------------------------------------

# (id, file text, line, key path, part of the message): message wording around the part may
# change with flowtaskd.core.schema.pydantic_problems; file, line and key path may not.
CASES = [
    (
        "typo",
        "state_dir: var\ninboxs:\n  - path: in\n",
        2,
        "inboxs",
        "unknown key (did you mean `inboxes`?)",
    ),
    (
        "nested typo",
        "concurrency:\n  max_run: 2\n",
        2,
        "concurrency.max_run",
        "unknown key (did you mean `max_runs`?)",
    ),
    ("no hint", "history:\n  zzz: 1\n", 2, "history.zzz", "unknown key"),
    (
        "bad cron",
        "schedules:\n  - {task: a, cron: '@daily'}\n  - task: b\n    cron: '0 25 * * *'\n",
        4,
        "schedules[1].cron",
        "hour field '25' out of range 0-23",
    ),
    (
        "task and command",
        "schedules:\n  - task: a\n    command: [ls]\n    every: 5m\n",
        3,
        "schedules[0].command",
        "set `task` (a library task) or `command` (an argv), not both",
    ),
    (
        "no task or command",
        "schedules:\n  - every: 5m\n",
        2,
        "schedules[0]",
        "a schedule needs `task` (a library task name) or `command`",
    ),
    (
        "no cron or every",
        "schedules:\n  - task: a\n",
        2,
        "schedules[0]",
        "a schedule needs `cron` (e.g. '0 3 * * *') or `every`",
    ),
    (
        "cron and every",
        "schedules:\n  - task: a\n    cron: '@daily'\n    every: 1h\n",
        4,
        "schedules[0].every",
        "set `cron` or `every`, not both",
    ),
    (
        "bad every",
        "schedules:\n  - task: a\n    every: soon\n",
        3,
        "schedules[0].every",
        "invalid interval 'soon'",
    ),
    (
        "zero every",
        "schedules:\n  - task: a\n    every: 0\n",
        3,
        "schedules[0].every",
        "greater than 0",
    ),
    (
        "bad timezone",
        "schedules:\n  - task: a\n    cron: '@daily'\n    timezone: Mars/Olympus\n",
        4,
        "schedules[0].timezone",
        "unknown timezone 'Mars/Olympus'",
    ),
    (
        "env on a task",
        "schedules:\n  - task: a\n    cron: '@daily'\n    env: {A: b}\n",
        4,
        "schedules[0].env",
        "only for `command` schedules",
    ),
    (
        "catchup",
        "schedules:\n  - task: a\n    cron: '@daily'\n    catchup: some\n",
        4,
        "schedules[0].catchup",
        "'none', 'latest' or 'all'",
    ),
    (
        "same derived id",
        "schedules:\n  - {task: a, cron: '@daily'}\n"
        "  - {task: a, cron: '@daily', params: {x: 1}}\n",
        3,
        "schedules[1].id",
        "'a (@daily)' is schedules[0]'s id too",
    ),
    (
        "dask needs a target",
        "executor:\n  kind: dask\n",
        1,
        "executor",
        "`kind: dask` needs `address` (a scheduler) or `local` (a cluster)",
    ),
    (
        "dask with both",
        "executor:\n  kind: dask\n  address: tcp://h:8786\n  local: {}\n",
        4,
        "executor.local",
        "set `address` or `local`, not both",
    ),
    (
        "address for local",
        "executor:\n  address: tcp://h:8786\n",
        2,
        "executor.address",
        "only used with `kind: dask`",
    ),
    (
        "metrics listen",
        "metrics:\n  listen: localhost\n",
        2,
        "metrics.listen",
        "'localhost' is not host:port",
    ),
    (
        "metrics port",
        "metrics:\n  listen: '0.0.0.0:70000'\n",
        2,
        "metrics.listen",
        "'0.0.0.0:70000' is not host:port",
    ),
    ("decimal mode", "control:\n  mode: 660\n", 2, "control.mode", "660 is not a mode 0-0777"),
    ("text mode", "control:\n  mode: rw\n", 2, "control.mode", "'rw' is not an octal mode"),
    (
        "socket too long",
        f"control:\n  socket: /{'s' * 120}\n",
        2,
        "control.socket",
        "a socket path has at most 107 bytes",
    ),
    (
        "webhook url",
        "webhooks:\n  - url: ftp://example.com\n",
        2,
        "webhooks[0].url",
        "a webhook url starts with http://",
    ),
    (
        "webhook event",
        "webhooks:\n  - url: http://h/\n    events: [done, complted]\n",
        3,
        "webhooks[0].events[1]",
        "unknown event 'complted' (did you mean 'completed'?)",
    ),
    (
        "subscriber",
        "subscribers: [mypkg.setup]\n",
        1,
        "subscribers[0]",
        "'mypkg.setup' is not 'package.module:function'",
    ),
    (
        "python_allow",
        "security:\n  python_allow: [ok.jobs, 'not ok']\n",
        2,
        "security.python_allow[1]",
        "'not ok' is not a module prefix",
    ),
    ("duration", "shutdown_grace: -1\n", 1, "shutdown_grace", "a duration cannot be negative"),
    ("empty path", "state_dir: ''\n", 1, "state_dir", "the path is empty"),
    ("level", "log:\n  level: verbose\n", 2, "log.level", "'debug', 'info', 'warning' or 'error'"),
    (
        "max_runs",
        "concurrency:\n  max_runs: 0\n",
        2,
        "concurrency.max_runs",
        "greater than or equal to 1",
    ),
    ("section type", "history: 30\n", 1, "history", "30"),
    (
        "duplicate inbox name",
        "inboxes:\n  - path: a/in\n  - path: b/in\n",
        3,
        "inboxes[1].name",
        "'in' is inboxes[0]'s name too",
    ),
    (
        "inbox in the library",
        "tasks: [lib]\ninboxes:\n  - path: lib/drop\n",
        3,
        "inboxes[0].path",
        "overlaps tasks[0]",
    ),
    (
        "archive in the inbox",
        "inboxes:\n  - path: in\n    archive: in/done\n",
        3,
        "inboxes[0].archive",
        "lies inside inboxes[0]",
    ),
    (
        "bad inbox name",
        "inboxes:\n  - path: in\n    name: a/b\n",
        3,
        "inboxes[0].name",
        "'a/b' cannot name an inbox",
    ),
    (
        "yaml 1.1 trap",
        "security:\n  trust_all_files: yes\n",
        2,
        "security.trust_all_files",
        "`yes` is read as boolean True",
    ),
    (
        "duplicate key",
        "log: {level: info}\nlog: {level: debug}\n",
        2,
        "log",
        "duplicate key `log` (first on line 1, again on line 2): the file is refused",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "path", "part"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_problem_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, path: str, part: str
) -> None:
    problems = _problems(tmp_path, text)
    prefix = f"{tmp_path / 'flowtaskd.yaml'}:{line}: {path}: "
    assert any(p.startswith(prefix) and part in p for p in problems), problems


def test_a_config_is_a_mapping(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "- a\n- b\n")
    assert problems == [
        f"{tmp_path / 'flowtaskd.yaml'}:1: the config is a mapping of options, got list"
    ]


def test_all_problems_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = (
        "metrics:\n  listen: nowhere\nschedules:\n  - task: a\n    cron: '61 * * * *'\nlogg: {}\n"
    )
    problems = _problems(tmp_path, text)
    assert [p.split(": ")[1] for p in problems] == ["metrics.listen", "schedules[0].cron", "logg"]
    assert [int(p.split(":")[1]) for p in problems] == [2, 5, 6]


def test_toml_problems_carry_lines(tmp_path: Path) -> None:
    text = '[executor]\nkind = "dask"\n\n[[schedules]]\ntask = "a"\ncron = "0 0 30 2 *"\n'
    problems = _problems(tmp_path, text, "flowtaskd.toml")
    where = str(tmp_path / "flowtaskd.toml")
    assert problems[0].startswith(f"{where}:1: executor: `kind: dask` needs")
    assert problems[1].startswith(
        f"{where}:6: schedules[0].cron: cron expression '0 0 30 2 *' never fires"
    )


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found") as caught:
        load_config(tmp_path / "missing.yaml", environ=NO_ENV)
    assert isinstance(caught.value, TaskParseError)
    with pytest.raises(ConfigError, match=r"unsupported config file type \('\.ini'\)"):
        load_config(_write(tmp_path, "", "flowtaskd.ini"), environ=NO_ENV)
    with pytest.raises(ConfigError, match=r"flowtaskd\.yaml:2: YAML syntax error"):
        _load(tmp_path, "log:\n  level: info: debug\n")


# --- the shipped file and the summary -------------------------------------------------------


def test_shipped_config_loads_to_the_defaults() -> None:
    path = REPO / "config" / "flowtaskd.yaml"
    cfg = load_config(path, environ=NO_ENV, cwd=REPO)
    assert cfg.state_dir == REPO / "var"
    assert cfg.tasks == [REPO / "config" / "tasks"]
    assert [i.path for i in cfg.inboxes] == [REPO / "var" / "inbox"]
    assert cfg == default_config(environ=NO_ENV, cwd=REPO)
    under_systemd = {"STATE_DIRECTORY": "/var/lib/flowtaskd"}
    assert load_config(path, environ=under_systemd, cwd=REPO).state_dir == Path(
        "/var/lib/flowtaskd"
    )


def test_shipped_config_names_every_option() -> None:
    text = (REPO / "config" / "flowtaskd.yaml").read_text()
    cfg = default_config(environ=NO_ENV)
    models: list[pydantic.BaseModel] = [
        cfg,
        cfg.history,
        cfg.control,
        cfg.concurrency,
        cfg.executor,
        cfg.log,
        cfg.security,
        cfg.metrics,
        cfg.web,
        cfg.inboxes[0],
        ScheduleConfig(task="a", every=1),
    ]
    keys = {key for model in models for key in type(model).model_fields}
    keys |= {"n_workers", "threads_per_worker", "url", "events", "secret", "retries"}
    keys |= {"signing", "retry_schedule"}
    keys |= {"sha256", "file"}
    assert [key for key in sorted(keys) if f"{key}:" not in text] == []


def test_summary_is_json_and_masks_secrets(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """
        webhooks:
          - url: https://bot:hunter2@hooks.example.com/x?token=abc
            secret: s3cret
            signing: github
          - url: https://example.com/plain
          - url: https://example.com/rotating
            secret: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_dGhlLXByZXZpb3VzLWtleS0wMTIzNDU2]
        """,
    )
    summary = config_summary(cfg)
    text = json.dumps(summary)
    assert "s3cret" not in text and "hunter2" not in text and "abc" not in text
    first, second, third = summary["webhooks"]
    assert third["secret"] == "***" and "whsec_" not in text
    assert first["secret"] == "***"
    assert first["url"] == "https://bot:***@hooks.example.com/x?***"
    assert second == {**second, "url": "https://example.com/plain", "secret": None}
    assert summary["state_dir"] == str(tmp_path / "var")
    assert "s3cret" not in repr(cfg) and "hunter2" not in repr(cfg)
    assert cfg.webhooks[0].secret == "s3cret"
