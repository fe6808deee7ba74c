"""``flowtaskd.core.options``: durations, argv, env values, retry policies, step options and
the ``events:`` actions, with the messages a user sees."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.core.options import (
    Backoff,
    NoParams,
    RetryPolicy,
    StepOptions,
    parse_duration,
)
from flowtaskd.core.rules import SkipError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("0.5s", 0.5),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("2H", 7200.0),
        ("1d", 86400.0),
        (" .5 s ", 0.5),
        ("1h30m", 5400.0),
        (timedelta(minutes=2), 120.0),
        (0, 0.0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "a duration is a number of seconds"),
        (None, "a duration is a number of seconds"),
        ([1], "a duration is a number of seconds"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        (-1, "cannot be negative"),
        ("soon", "invalid interval 'soon'"),
    ],
)
def test_parse_duration_refuses(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="must be greater than zero"):
        StepOptions.model_validate({"timeout": 0})
    assert StepOptions.model_validate({"timeout": "5m"}).timeout == 300.0


def argv(value: Any) -> Any:
    return StepOptions.model_validate({"precondition": value}).precondition


def test_argv_forms() -> None:
    assert argv(["a", 1, 2.5]) == ["a", "1", "2.5"]
    assert argv("echo hi") == "echo hi"
    assert argv(("a", "b")) == ["a", "b"]
    for bad, message in [
        ([], "the command is empty"),
        ("  ", "the command is empty"),
        (["a", True], "every argv element must be a string"),
        (["a", None], "every argv element must be a string"),
        (5, "a command is a list of arguments or a string"),
    ]:
        with pytest.raises(ValidationError, match=message):
            argv(bad)


def test_env_numbers_become_text_but_not_booleans() -> None:
    assert StepOptions.model_validate({"env": {"PORT": 8080, "R": 0.5}}).env == {
        "PORT": "8080",
        "R": "0.5",
    }
    with pytest.raises(ValidationError):
        StepOptions.model_validate({"env": {"ON": True}})


def test_strict_models_refuse_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        NoParams.model_validate({"x": 1})
    opts = StepOptions()
    with pytest.raises(ValidationError):
        opts.name = "x"  # type: ignore[misc]


def test_depends_as_one_id_or_a_list() -> None:
    assert StepOptions.model_validate({"depends": "a"}).depends == ["a"]
    assert StepOptions.model_validate({"depends": ["a", "b"]}).depends == ["a", "b"]
    assert StepOptions.model_validate({"depends": []}).depends == []
    assert StepOptions.model_validate({"depends": 0}).depends == [0]  # an upstream pile index
    assert StepOptions().depends is None


def test_step_name_pattern() -> None:
    assert StepOptions.model_validate({"name": "a.b-c_1"}).name == "a.b-c_1"
    for bad in ("a b", "-a", "a/b", ""):
        with pytest.raises(ValidationError):
            StepOptions.model_validate({"name": bad})


def test_retry_delays_fixed_exponential_capped_and_jittered() -> None:
    fixed = RetryPolicy(attempts=4, delay=2.0)
    assert [fixed.delay_before(n) for n in (1, 2, 3, 4)] == [2.0, 2.0, 2.0, 2.0]
    exp = RetryPolicy.model_validate(
        {"attempts": 5, "delay": "1s", "backoff": "exponential", "max_delay": 5}
    )
    assert exp.backoff is Backoff.EXPONENTIAL
    assert [exp.delay_before(n) for n in (2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0]
    jit = RetryPolicy(attempts=2, delay=10.0, jitter=0.5)
    assert jit.delay_before(2, rand=0.0) == 10.0
    assert jit.delay_before(2, rand=0.5) == 7.5


def test_should_retry_counts_attempts_and_exit_codes() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(1, 1) and policy.should_retry(2, None)
    assert not policy.should_retry(3, 1)
    only = RetryPolicy(attempts=3, on_exit_codes=[75])
    assert only.should_retry(1, 75)
    assert not only.should_retry(1, 1)
    assert not only.should_retry(1, None)


@pytest.mark.parametrize(
    "bad", [{"attempts": 0}, {"attempts": 101}, {"jitter": 1.5}, {"delay": -1}, {"x": 1}]
)
def test_retry_policy_bounds(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(bad)


def test_skip_error_takes_upstreams_alias() -> None:
    assert StepOptions.model_validate({"skipError": "log_only"}).skipError is SkipError.LOG
    assert StepOptions().skipError is SkipError.ENFORCE


def test_branch_is_refused_with_the_alternatives() -> None:
    with pytest.raises(ValidationError, match=r"`branch` is not supported.*use `Goto`, `OnError`"):
        StepOptions.model_validate({"branch": "x"})
