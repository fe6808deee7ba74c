"""flowtaskd.daemon.config.models: each section's model validated alone, and the path rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.daemon.config.models import (
    ControlConfig,
    ExecutorConfig,
    HistoryConfig,
    InboxConfig,
    MetricsConfig,
    PathContext,
    ScheduleConfig,
    WebConfig,
    WebhookConfig,
    WebToken,
    inbox_defaults,
    with_default,
)

CTX = PathContext(Path("/srv/app"), {"HOME": "/home/u"})


def _errors(model: Any, data: Any, ctx: PathContext = CTX) -> str:
    with pytest.raises(ValidationError) as exc:
        model.model_validate(data, context=ctx)
    return str(exc.value)


def test_path_context_resolves_relative_home_and_absolute() -> None:
    assert CTX.path("var") == Path("/srv/app/var")
    assert CTX.path("~/x") == Path("/home/u/x")
    assert CTX.path("~") == Path("/home/u")
    assert CTX.path("/abs") == Path("/abs")


def test_state_dir_and_socket_from_systemd_dirs() -> None:
    assert CTX.state_dir() == Path("/srv/app/var")
    env = PathContext(
        Path("/w"), {"STATE_DIRECTORY": "/var/lib/f:/var/lib/g", "RUNTIME_DIRECTORY": "/run/f"}
    )
    assert env.state_dir() == Path("/var/lib/f")  # the first of several
    assert env.socket(env.state_dir()) == Path("/run/f/control.sock")
    assert CTX.socket(Path("/s")) == Path("/s/control.sock")


def test_with_default_fills_missing_and_null_only() -> None:
    assert with_default(None, "k", 1) == {"k": 1}
    assert with_default({"k": None}, "k", 1) == {"k": 1}
    assert with_default({"k": 2}, "k", 1) == {"k": 2}
    assert with_default("odd", "k", 1) == "odd"  # left for the model to reject


def test_inbox_defaults_name_and_archive() -> None:
    out = inbox_defaults({"path": "drops/in"}, CTX, Path("/st"))
    assert out == {"path": "drops/in", "name": "in", "archive": Path("/st/archive/in")}
    assert inbox_defaults({"path": ""}, CTX, Path("/st")) == {"path": ""}


def test_inbox_alone_resolves_and_names() -> None:
    box = InboxConfig.model_validate({"path": "in", "name": "mail"}, context=CTX)
    assert (box.path, box.name, box.archive) == (
        Path("/srv/app/in"),
        "mail",
        Path("/srv/app/var/archive/mail"),
    )


@pytest.mark.parametrize("name", ["..", "a/b", "."])
def test_inbox_bad_names(name: str) -> None:
    assert f"'{name}' cannot name an inbox" in _errors(InboxConfig, {"path": "in", "name": name})


def test_inbox_empty_path() -> None:
    assert "the path is empty" in _errors(InboxConfig, {"path": "  "})


def test_schedule_id_is_derived_from_what_and_when() -> None:
    s = ScheduleConfig.model_validate({"task": "report", "cron": "0 3 * * *"})
    assert s.id == "report (0 3 * * *)"
    c = ScheduleConfig.model_validate({"command": ["echo", "a b"], "every": "5m"})
    assert c.id == "echo 'a b' (every 5m)" and c.every == 300.0
    assert c.interval is not None and c.interval.total_seconds() == 300
    assert ScheduleConfig.model_validate({"id": "mine", "task": "t", "every": 1}).id == "mine"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"task": "t", "command": ["x"], "cron": "@daily"},
            "command: set `task` (a library task) or `command`",
        ),
        ({"cron": "@daily"}, "a schedule needs `task`"),
        ({"task": "t", "cron": "@daily", "every": 5}, "every: set `cron` or `every`, not both"),
        ({"task": "t"}, "a schedule needs `cron`"),
        ({"task": "t", "cron": "@daily", "timeout": 5}, "timeout: only for `command` schedules"),
        ({"task": "t", "cron": "0 24 * * *"}, "hour"),
        ({"task": "t", "cron": "@daily", "timezone": "Mars/Base"}, "Mars/Base"),
        ({"task": "t", "every": 0}, "greater than 0"),
    ],
)
def test_schedule_refusals(data: dict[str, Any], message: str) -> None:
    assert message in _errors(ScheduleConfig, data)


def test_schedule_env_numbers_become_text() -> None:
    s = ScheduleConfig.model_validate({"command": ["x"], "every": 1, "env": {"N": 3, "F": 1.5}})
    assert s.env == {"N": "3", "F": "1.5"}


def test_executor_targets() -> None:
    assert (
        ExecutorConfig.model_validate({"kind": "dask", "address": "tcp://h:8786"}).address
        == "tcp://h:8786"
    )
    assert "address: only used with `kind: dask`" in _errors(
        ExecutorConfig, {"address": "tcp://h:1"}
    )
    assert "needs `address` (a scheduler) or `local`" in _errors(ExecutorConfig, {"kind": "dask"})
    both = {"kind": "dask", "address": "tcp://h:1", "local": {}}
    assert "local: set `address` or `local`, not both" in _errors(ExecutorConfig, both)


def test_history_path_defaults_under_the_state_dir() -> None:
    assert HistoryConfig.model_validate({}, context=CTX).path == Path("/srv/app/var/history.db")
    assert HistoryConfig.model_validate(None, context=CTX).retention_days == 30.0


def test_control_mode_is_octal_text_and_the_socket_is_short() -> None:
    assert ControlConfig.model_validate({"mode": "0600"}, context=CTX).mode == 0o600
    assert ControlConfig.model_validate({"mode": "0o640"}, context=CTX).mode == 0o640
    assert "'rw' is not an octal mode" in _errors(ControlConfig, {"mode": "rw"})
    assert "is not a mode 0-0777" in _errors(ControlConfig, {"mode": 4096})
    long = "/" + "s" * 120
    assert "a socket path has at most 107 bytes, this has 121" in _errors(
        ControlConfig, {"socket": long}
    )


def test_webhook_checks() -> None:
    assert "a webhook url starts with http://" in _errors(WebhookConfig, {"url": "ftp://h/x"})
    assert "unknown event 'run_stated' (did you mean" in _errors(
        WebhookConfig, {"url": "http://h/", "events": ["run_stated"]}
    )
    assert "secret: signing: github takes one secret" in _errors(
        WebhookConfig, {"url": "http://h/", "signing": "github", "secret": ["a", "b"]}
    )
    assert "(for a plain HMAC key, set signing: github)" in _errors(
        WebhookConfig, {"url": "http://h/", "secret": "plain"}
    )
    hook = WebhookConfig.model_validate(
        {"url": "https://u:pw@h/x", "secret": "s", "signing": "github"}
    )
    assert "pw" not in repr(hook) and "'s'" not in repr(hook)


def test_metrics_address() -> None:
    assert MetricsConfig().address is None
    assert MetricsConfig(listen="127.0.0.1:9464").address == ("127.0.0.1", 9464)
    assert MetricsConfig(listen="[::1]:80").address == ("::1", 80)
    assert "is not host:port" in _errors(MetricsConfig, {"listen": "127.0.0.1:70000"})


def test_web_switch_and_address() -> None:
    assert WebConfig.model_validate(False).enabled is False
    assert WebConfig.model_validate(None).address == ("127.0.0.1", 8470)
    assert WebConfig.model_validate({"listen": "localhost:0"}).address == ("localhost", 0)


def test_web_off_loopback_needs_tls_or_insecure_http() -> None:
    msg = _errors(WebConfig, {"listen": "0.0.0.0:8470"})
    assert "listen: '0.0.0.0:8470' is not a loopback address" in msg
    assert WebConfig.model_validate({"listen": "0.0.0.0:8470", "insecure_http": True}).enabled
    assert WebConfig.model_validate({"listen": "0.0.0.0:8470", "enabled": False}).enabled is False
    tls = WebConfig.model_validate(
        {"listen": "0.0.0.0:1", "tls_cert": "c", "tls_key": "k"}, context=CTX
    )
    assert tls.tls and tls.tls_cert == Path("/srv/app/c")
    assert "tls_key: TLS needs both" in _errors(WebConfig, {"tls_cert": "c"})


def test_web_token_is_a_digest_or_a_file() -> None:
    assert WebToken.model_validate({"sha256": "a" * 64}).sha256 == "a" * 64
    assert "give `sha256`" in _errors(WebToken, {})
    assert "give `sha256`" in _errors(WebToken, {"sha256": "a" * 64, "file": "f"})
    assert "pattern" in _errors(WebToken, {"sha256": "zz"})
