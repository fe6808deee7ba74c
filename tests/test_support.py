"""``flowtaskd.components.support``: extras, credentials, local paths, ``.part`` files and
capped JSON, the pieces the batteries share."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from flowtaskd.components.context import StepContext
from flowtaskd.components.support import (
    CredentialError,
    Credentials,
    ExtraParams,
    capped_json,
    commit_part,
    credential,
    discard,
    env_of,
    importable,
    local_path,
    part_path,
    plain_value,
)
from flowtaskd.errors import ExecutionError


def ctx(**kw: Any) -> StepContext:
    return StepContext("t", "r1", "S_1", "X", {}, **kw)


class NeedsNothing(ExtraParams):
    requires: ClassVar[tuple[str, ...]] = ("json",)
    extra: ClassVar[str] = "none"
    host: str


class NeedsMissing(ExtraParams):
    requires: ClassVar[tuple[str, ...]] = ("json", "no_such_module_4711", "no.such.pkg")
    extra: ClassVar[str] = "special"
    host: str = "h"


def test_importable_asks_without_importing() -> None:
    assert importable("json") and importable("flowtaskd.components.support")
    assert not importable("no_such_module_4711")
    assert not importable("no_such_pkg_4711.sub")  # a missing parent is not an error


def test_extra_params_name_the_missing_modules_and_the_install() -> None:
    assert NeedsNothing.model_validate({"host": "x"}).host == "x"
    with pytest.raises(ValidationError) as err:
        NeedsMissing.model_validate({})
    assert (
        "needs no_such_module_4711, no.such.pkg, which is not installed: "
        "pip install 'flowtaskd[special]'" in str(err.value)
    )


def test_credentials_take_upstreams_user_key() -> None:
    c = Credentials.model_validate({"user": "ops", "password": "PW"})
    assert (c.username, c.password) == ("ops", "PW")
    assert Credentials.model_validate({}).username is None


def test_env_of_is_the_steps_env_or_this_processs() -> None:
    assert env_of(ctx()) is os.environ
    assert env_of(ctx(env={"A": "b"})) == {"A": "b"}


def test_plain_value_looks_up_an_upper_case_env_name() -> None:
    c = ctx(env={"SMTP_USER": "ops", "lower": "no"})
    assert plain_value(c, "SMTP_USER") == "ops"
    assert plain_value(c, "UNSET_NAME") == "UNSET_NAME"  # not set: the text itself
    assert plain_value(c, "lower") == "lower"  # not an env var name
    assert plain_value(c, None) is None


def test_a_credential_must_be_one_of_the_runs_secrets() -> None:
    c = ctx(env={"DB_PASSWORD": "hunter2"}, secrets=("hunter2", "tok-9"))
    assert credential(c, "DB_PASSWORD", "credentials.password", allow_plaintext=False) == "hunter2"
    assert credential(c, "tok-9", "x", allow_plaintext=False) == "tok-9"  # a substituted secret
    assert credential(c, None, "x", allow_plaintext=False) is None


def test_a_credential_refused_says_where_and_never_the_value() -> None:
    c = ctx(env={"OTHER": "leaked-1"}, secrets=())
    with pytest.raises(CredentialError) as err:
        credential(c, "plain-pass-77", "credentials.password", allow_plaintext=False)
    text = str(err.value)
    assert text.startswith("credentials.password: not one of the task's secrets; name an env var")
    assert "plain-pass-77" not in text and isinstance(err.value, ExecutionError)
    with pytest.raises(CredentialError) as err:
        credential(c, "OTHER", "credentials.password", allow_plaintext=False)
    assert "leaked-1" not in str(err.value)  # set but not a secret: refused, value not shown
    with pytest.raises(CredentialError, match=r"^credentials.password: no env var SMTP_PW is set$"):
        credential(c, "SMTP_PW", "credentials.password", allow_plaintext=False)


def test_a_plaintext_credential_with_leave() -> None:
    c = ctx(env={"PW": "from-env"})
    assert credential(c, "literal", "x", allow_plaintext=True) == "literal"
    assert credential(c, "PW", "x", allow_plaintext=True) == "from-env"
    assert credential(c, "UNSET_PW", "x", allow_plaintext=True) == "UNSET_PW"


def test_local_path_is_relative_to_the_steps_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert local_path(ctx(cwd="/srv/jobs"), "in/a.csv") == Path("/srv/jobs/in/a.csv")
    assert local_path(ctx(cwd="/srv/jobs"), "/abs") == Path("/abs")
    assert local_path(ctx(), "rel") == Path("rel")
    assert local_path(ctx(cwd="/srv"), "~/x") == tmp_path / "x"


def test_a_part_file_takes_the_targets_name_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "report.csv.gz"
    part = part_path(target)
    assert part == tmp_path / "report.csv.gz.part"
    target.write_text("old")
    part.write_text("new")
    commit_part(part, target)  # replaces an older file in one step
    assert target.read_text() == "new" and not part.exists()


def test_discard_removes_a_file_and_ignores_a_missing_one(tmp_path: Path) -> None:
    f = tmp_path / "x.part"
    f.write_text("x")
    discard(f)
    assert not f.exists()
    discard(f)


def test_capped_json_says_when_it_cut() -> None:
    assert capped_json({"a": "é"}, 100) == ('{"a": "é"}', False)  # not ASCII-escaped
    text, cut = capped_json(list(range(100)), 10)
    assert cut and text == json.dumps(list(range(100)))[:10]
    assert capped_json({"when": Path("/x")}, 100) == ('{"when": "/x"}', False)
    exact = json.dumps([1, 2])
    assert capped_json([1, 2], len(exact)) == (exact, False)
