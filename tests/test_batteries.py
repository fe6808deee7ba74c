"""What every battery shares: the registry has them all, a missing extra fails validation
with the pip install that brings it, credentials must be run secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components import support
from flowtaskd.components.context import StepContext
from flowtaskd.components.registry import registry
from flowtaskd.core.schema import validate_definition
from flowtaskd.errors import TaskParseError

BATTERIES = [
    "HTTPClient",
    "RESTClient",
    "SendEmail",
    "SendNotify",
    "RunSSH",
    "DownloadFromSFTP",
    "UploadToSFTP",
    "DownloadFromFTP",
    "UploadToFTP",
    "Rsync",
    "Uncompress",
    "Unzip",
    "UnGzip",
    "FileExists",
    "FileRename",
    "FileRead",
    "FileOpen",
    "Wait",
    "PrintMessage",
    "DateList",
    "ParamIterator",
    "Loop",
    "IF",
    "Switch",
    "SetVariables",
    "ExecuteSQL",
    "UserFunc",
]

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_battery_is_registered_and_documented() -> None:
    names = set(registry())
    assert set(BATTERIES) <= names
    readme = README.read_text()
    missing = [b for b in BATTERIES if f"| `{b}`" not in readme]
    assert missing == [], "not in the README's component table"


@pytest.mark.parametrize(
    "step,extra",
    [
        ({"RunSSH": {"host": "h", "command": "true"}}, "net"),
        ({"ExecuteSQL": {"url": "sqlite://", "sql": "select 1"}}, "sql"),
    ],
)
def test_a_missing_extra_fails_validation_with_the_install(
    monkeypatch: pytest.MonkeyPatch, step: dict[str, Any], extra: str
) -> None:
    missing = {"asyncssh", "sqlalchemy"}
    monkeypatch.setattr(support, "importable", lambda module: module not in missing)
    with pytest.raises(TaskParseError) as err:
        validate_definition({"name": "x", "steps": [step]}, catalog=registry())
    text = str(err.value)
    (comp,) = step
    assert f"steps[0].{comp}" in text
    assert f"pip install 'flowtaskd[{extra}]'" in text


def test_postgres_without_its_driver_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowtaskd.components import sql  # noqa: PLC0415

    monkeypatch.setattr(sql, "importable", lambda module: module != "psycopg")
    step = {"ExecuteSQL": {"url": "postgresql+psycopg://u@h/db", "sql": "select 1"}}
    with pytest.raises(TaskParseError) as err:
        validate_definition({"name": "x", "steps": [step]}, catalog=registry())
    assert "postgresql needs psycopg: pip install 'flowtaskd[sql]'" in str(err.value)


@pytest.mark.parametrize(
    ("step", "good", "bad", "message"),
    [
        ("HTTPClient", "Post", "gett", "should be one of get, post, put, patch, delete, head"),
        ("PrintMessage", "warn", "loud", "should be one of debug, info, warn, warning, error"),
    ],
)
def test_words_in_any_case(step: str, good: str, bad: str, message: str) -> None:
    """``method``/``level`` take upstream's words in any case; a wrong one is named with
    the words, not a regex (the schema's regex is ECMA-262 for ajv: tests/test_schema_tools)."""
    key = "method" if step == "HTTPClient" else "level"
    extra = {"url": "http://127.0.0.1/"} if step == "HTTPClient" else {}
    ok = {"name": "x", "steps": [{step: {**extra, key: good}}]}
    validate_definition(ok, catalog=registry())
    with pytest.raises(TaskParseError) as err:
        validate_definition(
            {"name": "x", "steps": [{step: {**extra, key: bad}}]}, catalog=registry()
        )
    assert f"steps[0].{step}.{key}: {message}" in str(err.value)
    assert f"got '{bad}'" in str(err.value)


def ctx(**kw: Any) -> StepContext:
    return StepContext(task="t", run_id="r", step_id="s", component="X", params={}, **kw)


def test_credentials_must_be_run_secrets() -> None:
    c = ctx(env={"DB_PW": "s3cret", "OTHER": "x"}, secrets=("s3cret", "from-param"))
    assert support.credential(c, "DB_PW", "pw", allow_plaintext=False) == "s3cret"
    assert support.credential(c, "from-param", "pw", allow_plaintext=False) == "from-param"
    with pytest.raises(support.CredentialError, match="not one of the task's secrets"):
        support.credential(c, "OTHER", "pw", allow_plaintext=False)  # set, but not a secret
    with pytest.raises(support.CredentialError, match="no env var MISSING_PW"):
        support.credential(c, "MISSING_PW", "pw", allow_plaintext=False)
    with pytest.raises(support.CredentialError) as err:
        support.credential(c, "hunter2", "pw", allow_plaintext=False)
    assert "hunter2" not in str(err.value)
    assert support.credential(c, "hunter2", "pw", allow_plaintext=True) == "hunter2"
    assert support.credential(c, None, "pw", allow_plaintext=False) is None


def _examples() -> list[tuple[str, str]]:
    rows = []
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].strip("`") in BATTERIES and cells[4].startswith("`{"):
            rows.append((cells[0].strip("`"), cells[4].strip("`")))
    return rows


def test_every_battery_has_an_example() -> None:
    assert sorted(name for name, _ in _examples()) == sorted(BATTERIES)


@pytest.mark.parametrize("name,example", _examples())
def test_the_readme_examples_validate(name: str, example: str) -> None:
    import yaml  # noqa: PLC0415

    params = yaml.safe_load(example)
    validate_definition({"name": "example", "steps": [{name: params}]}, catalog=registry())
