"""ExecuteSQL on SQLite and on a real PostgreSQL server started by the tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components.registry import registry
from flowtaskd.components.sql import split_statements
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.core.schema import validate_definition
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import Task
from tests.conftest import wait_for
from tests.pg import PASSWORD, postgres_server
from tests.servers import need_module

need_module("sqlalchemy", "pip install -e '.[sql]'")


async def run(steps: list[dict[str, Any]], tmp_path: Path, **header: Any) -> Any:
    task = {"name": "sql", "steps": steps, **header}
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        return await t.run()


def result(stats: Any, sid: str) -> Any:
    s = stats.steps[sid]
    assert s.status is StepStatus.DONE, s.error
    return json.loads(s.output)


def test_split_statements() -> None:
    text = "insert into t values ('a;b'); -- c;d\n/* e;f */ select \"x;y\" from t;;  "
    assert split_statements(text) == ["insert into t values ('a;b')", 'select "x;y" from t']
    assert split_statements("select 'it''s;'") == ["select 'it''s;'"]


async def test_sqlite_statements_params_and_file(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    (tmp_path / "seed.sql").write_text(
        "create table t (id integer primary key, name text);\n"
        "insert into t (name) values ('a'), ('b; c');\n"
    )
    url = f"sqlite:///{db}"
    stats = await run(
        [
            {"ExecuteSQL": {"url": url, "file_sql": str(tmp_path / "seed.sql")}},
            {
                "ExecuteSQL": {
                    "url": url,
                    "sql": "insert into t (name) values (:name)",
                    "params": {"name": "{who}"},
                }
            },
            {
                "ExecuteSQL": {
                    "url": url,
                    "sql": "select id, name from t where id >= :low order by id",
                    "params": {"low": 2},
                }
            },
        ],
        tmp_path,
        params={"who": "x'); drop table t; --"},
    )
    seeded = result(stats, "ExecuteSQL_1")
    assert len(seeded) == 2 and seeded[1] == {"rowcount": 2}
    assert result(stats, "ExecuteSQL_2") == {"rowcount": 1}
    rows = result(stats, "ExecuteSQL_3")["rows"]
    assert rows == [
        {"id": 2, "name": "b; c"},
        {"id": 3, "name": "x'); drop table t; --"},
    ]  # bound, not run


async def test_all_or_nothing_and_max_rows(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    with sqlite3.connect(db) as c:
        c.execute("create table t (n integer unique)")
        c.executemany("insert into t values (?)", [(i,) for i in range(50)])
    url = f"sqlite:///{db}"
    stats = await run(
        [
            {
                "ExecuteSQL": {
                    "url": url,
                    "sql": ["delete from t where n < 10", "insert into t values (20)"],
                }
            },
            {
                "ExecuteSQL": {
                    "url": url,
                    "sql": "select n from t order by n",
                    "max_rows": 5,
                    "depends": [],
                }
            },
        ],
        tmp_path,
    )
    assert stats.steps["ExecuteSQL_1"].status is StepStatus.FAILED
    assert "UNIQUE constraint failed" in stats.steps["ExecuteSQL_1"].error
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from t").fetchone() == (50,)  # the delete rolled back
    out = result(stats, "ExecuteSQL_2")
    assert out["rowcount"] == 5 and out["truncated"] is True


def test_validation() -> None:
    with pytest.raises(TaskParseError) as err:
        validate_definition(
            {
                "name": "x",
                "steps": [
                    {"ExecuteSQL": {"url": "sqlite://"}},
                    {"ExecuteSQL": {"url": "x", "sql": "s"}},
                ],
            },
            catalog=registry(),
        )
    text = str(err.value)
    assert "give one of `sql` or `file_sql`" in text and "steps[1].ExecuteSQL.url" in text


async def test_password_in_the_url_is_refused(tmp_path: Path) -> None:
    stats = await run(
        [
            {
                "ExecuteSQL": {
                    "url": "postgresql+psycopg://u:inclear@127.0.0.1:1/db",
                    "sql": "select 1",
                }
            }
        ],
        tmp_path,
    )
    error = stats.steps["ExecuteSQL_1"].error
    assert "holds a password" in error and "inclear" not in error


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    need_module("psycopg", "pip install -e '.[sql]'")
    folder = Path(tempfile.mkdtemp(prefix="flowtaskd-pg-"))  # pytest's is root-only
    try:
        with postgres_server(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sleeping(url: str) -> int:
    """Backends running pg_sleep now (asked over a connection of the test's own)."""
    import psycopg  # noqa: PLC0415

    dsn = url.replace("postgresql+psycopg://flow@", f"postgresql://flow:{PASSWORD}@")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where query like 'select pg_sleep%' "
            "and state = 'active' and pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def pg(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "credentials": {"password": "PGPASS_FLOW"}, **extra}


async def run_pg(steps: list[dict[str, Any]], tmp_path: Path) -> Any:
    task = {"name": "pg", "secrets": ["PGPASS_FLOW"], "steps": steps}
    env = {"PGPASS_FLOW": PASSWORD, "PATH": "/usr/bin:/bin"}
    async with Task(task=task, log_dir=tmp_path / "logs", base_env=env) as t:
        return await t.run()


async def test_postgres_round_trip(pg_url: str, tmp_path: Path) -> None:
    stats = await run_pg(
        [
            {
                "ExecuteSQL": pg(
                    pg_url,
                    sql="create table if not exists items (id serial primary key, tag text, at date)",  # noqa: E501
                )
            },
            {
                "ExecuteSQL": pg(
                    pg_url,
                    sql="insert into items (tag, at) values (:tag, :at), (:tag, :at)",
                    params={"tag": "x", "at": "2024-02-29"},
                )
            },
            {
                "ExecuteSQL": pg(
                    pg_url, sql="select tag, at, count(*) as n from items group by tag, at"
                )
            },
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, {k: v.error for k, v in stats.steps.items()}
    assert result(stats, "ExecuteSQL_2") == {"rowcount": 2}
    assert result(stats, "ExecuteSQL_3")["rows"] == [{"tag": "x", "at": "2024-02-29", "n": 2}]


async def test_postgres_wrong_password(pg_url: str, tmp_path: Path) -> None:
    task = {
        "name": "pg",
        "secrets": ["pw"],
        "params": {"pw": "nope-123"},
        "steps": [
            {"ExecuteSQL": {"url": pg_url, "credentials": {"password": "{pw}"}, "sql": "select 1"}}
        ],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    error = stats.steps["ExecuteSQL_1"].error
    assert "password authentication failed" in error and "nope-123" not in error


async def test_postgres_timeout_cancels_the_query_on_the_server(
    pg_url: str, tmp_path: Path
) -> None:
    stats = await run_pg(
        [{"ExecuteSQL": pg(pg_url, sql="select pg_sleep(60)", timeout=1)}], tmp_path
    )
    assert stats.steps["ExecuteSQL_1"].status is StepStatus.TIMED_OUT
    await wait_for(lambda: sleeping(pg_url) == 0, timeout=10)


async def test_postgres_cancel_stops_the_query(pg_url: str, tmp_path: Path) -> None:
    task = {
        "name": "pg",
        "secrets": ["PGPASS_FLOW"],
        "steps": [{"ExecuteSQL": pg(pg_url, sql="select pg_sleep(60)")}],
    }
    env = {"PGPASS_FLOW": PASSWORD, "PATH": "/usr/bin:/bin"}
    async with Task(task=task, log_dir=tmp_path / "logs", base_env=env) as t:
        running = asyncio.ensure_future(t.run())
        await wait_for(lambda: sleeping(pg_url) == 1, timeout=10)
        t.cancel()
        stats = await asyncio.wait_for(running, 10)
    assert stats.status is TaskStatus.CANCELLED
    await wait_for(lambda: sleeping(pg_url) == 0, timeout=10)
