"""``ExecuteSQL``: statements or ``.sql`` files on SQLAlchemy (the ``sql`` extra).

SQLite is built in (``url: sqlite:///data.db``); PostgreSQL goes through psycopg
(``url: postgresql+psycopg://user@host:5432/db``). Values are bound (``:name`` in the
text, ``params:`` in the step), never formatted into it. Every statement of a step runs
in one transaction: all or nothing. The output is ``{"rowcount": n}``, and for a query
also ``"rows"`` (a list of objects, at most ``max_rows``, size-capped). The password is a
credential (``credentials.password``) -- one written in ``url`` is refused unless
``allow_plaintext_credentials``. A timeout or a cancel interrupts the statement on the
server (psycopg ``cancel``, sqlite ``interrupt``) and rolls the transaction back.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from flowtaskd.components.base import Component
from flowtaskd.components.support import Credentials, ExtraParams, importable
from flowtaskd.core.options import StrictModel
from flowtaskd.core.rules import StepStatus

if TYPE_CHECKING:
    from flowtaskd.components.context import StepContext, StepOutcome

__all__ = ["COMPONENTS", "split_statements"]

_DRIVERS = {"postgresql": ("psycopg", "sql"), "sqlite": ("sqlite3", "sql")}


class ExecuteSQLParams(ExtraParams):
    requires = ("sqlalchemy",)
    extra = "sql"

    url: str = Field(
        pattern=r"^[a-z][a-z0-9+]*://", description="SQLAlchemy URL, e.g. sqlite:///x.db."
    )
    sql: str | list[str] | None = Field(default=None, description="Statement(s) to run.")
    file_sql: str | list[str] | None = Field(
        default=None, description=".sql file(s), relative to the task file."
    )
    multi: bool = Field(default=False, description="Split each text into statements at `;`.")
    params: dict[str, Any] = Field(default_factory=dict, description="Bound as :name.")
    credentials: Credentials | None = None
    allow_plaintext_credentials: bool = False
    max_rows: int = Field(default=1000, ge=0)
    output_cap: int = Field(default=1 << 20, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> ExecuteSQLParams:
        if (self.sql is None) == (self.file_sql is None):
            raise ValueError("give one of `sql` or `file_sql`")
        backend = self.url.split("://", 1)[0].split("+", 1)[0]
        module, extra = _DRIVERS.get(backend, ("", ""))
        if module and not importable(module):
            raise ValueError(f"{backend} needs {module}: pip install 'flowtaskd[{extra}]'")
        return self


def split_statements(text: str) -> list[str]:
    """``text`` cut at each ``;`` that is not in a quote or a comment."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = i + 1
            while j < n and not (text[j] == c and (j + 1 >= n or text[j + 1] != c)):
                j += 2 if text[j] == c else 1
            buf.append(text[i : j + 1])
            i = j + 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    out.append("".join(buf))
    return [s.strip() for s in out if s.strip()]


def _texts(ctx: StepContext, p: ExecuteSQLParams) -> list[str]:
    from flowtaskd.components.support import local_path  # noqa: PLC0415

    if p.sql is not None:
        texts = [p.sql] if isinstance(p.sql, str) else list(p.sql)
    else:
        files = [p.file_sql] if isinstance(p.file_sql, str) else list(p.file_sql or [])
        texts = []
        for f in files:
            path = Path(f)
            if not path.is_absolute():
                path = Path(ctx.base_dir) / path if ctx.base_dir else local_path(ctx, f)
            texts.append(path.read_text(encoding="utf-8"))
    if p.multi or p.file_sql is not None:
        return [s for t in texts for s in split_statements(t)]
    return texts


class _Run:
    """The statements of one step in a worker thread; ``interrupt`` stops the one running."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dbapi: Any = None
        self.stopped = False

    def interrupt(self) -> None:
        with self.lock:
            self.stopped = True
            conn = self.dbapi
        if conn is None:
            return
        for method in ("cancel", "interrupt"):  # psycopg / sqlite3
            if hasattr(conn, method):
                try:
                    getattr(conn, method)()
                except Exception:  # the statement may have ended meanwhile
                    continue
                return

    def execute(
        self, url: Any, statements: list[str], params: dict[str, Any], max_rows: int
    ) -> Any:
        import sqlalchemy as sa  # noqa: PLC0415

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                with self.lock:
                    if self.stopped:
                        raise InterruptedError("cancelled")
                    self.dbapi = conn.connection.dbapi_connection
                results = []
                with conn.begin():
                    for text in statements:
                        res = conn.execute(sa.text(text), params)
                        results.append(_result(res, max_rows))
                with self.lock:
                    self.dbapi = None
                return results
        finally:
            engine.dispose()


def _result(res: Any, max_rows: int) -> dict[str, Any]:
    if not res.returns_rows:
        return {"rowcount": res.rowcount}
    keys = list(res.keys())
    rows = [dict(zip(keys, r, strict=True)) for r in res.fetchmany(max_rows + 1)]
    out: dict[str, Any] = {"rowcount": len(rows[:max_rows]), "rows": rows[:max_rows]}
    if len(rows) > max_rows:
        out["truncated"] = True
    return out


class ExecuteSQLComponent(Component):
    name = "ExecuteSQL"
    Params: ClassVar[type[StrictModel]] = ExecuteSQLParams
    needs_env = True
    summary = "Run SQL statements or .sql files (bound parameters) on SQLite or PostgreSQL."

    async def run(self, ctx: StepContext) -> StepOutcome:
        import asyncio  # noqa: PLC0415

        import sqlalchemy as sa  # noqa: PLC0415

        from flowtaskd.components.context import StepOutcome  # noqa: PLC0415
        from flowtaskd.components.runtime import mask_outcome  # noqa: PLC0415
        from flowtaskd.components.support import (  # noqa: PLC0415
            CredentialError,
            capped_json,
            credential,
            plain_value,
        )

        p = ExecuteSQLParams.model_validate(ctx.params)
        try:
            url = sa.make_url(p.url)
            if url.password is not None and not p.allow_plaintext_credentials:
                raise CredentialError("url: holds a password; use credentials.password instead")
            if p.credentials is not None:
                allow = p.allow_plaintext_credentials
                pw = credential(
                    ctx, p.credentials.password, "credentials.password", allow_plaintext=allow
                )
                user = plain_value(ctx, p.credentials.username)
                url = url.set(username=user or url.username, password=pw)
            statements = await asyncio.to_thread(_texts, ctx, p)
        except (CredentialError, OSError, sa.exc.ArgumentError) as exc:
            return StepOutcome(StepStatus.FAILED, error=str(exc))
        if not statements:
            return StepOutcome(StepStatus.FAILED, error="no SQL statement to run")
        run = _Run()
        task = asyncio.ensure_future(
            asyncio.to_thread(run.execute, url, statements, p.params, p.max_rows)
        )
        try:
            async with asyncio.timeout(ctx.timeout):
                results = await asyncio.shield(task)
        except (TimeoutError, asyncio.CancelledError) as exc:
            run.interrupt()  # the server stops the statement; the transaction rolls back
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the cancel is what is reported
            if isinstance(exc, asyncio.CancelledError):
                raise
            return StepOutcome(StepStatus.TIMED_OUT, error=f"timed out after {ctx.timeout:g}s")
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            error = _sql_error(exc)
            return mask_outcome(StepOutcome(StepStatus.FAILED, error=error), ctx.secrets)
        value = results[0] if len(results) == 1 else results
        text, cut = capped_json(value, p.output_cap)
        if cut:
            return StepOutcome(
                StepStatus.FAILED, error=f"the rows are larger than output_cap ({p.output_cap})"
            )
        return StepOutcome(StepStatus.DONE, output=text)


def _sql_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    what = orig if orig is not None else exc
    first = str(what).strip().splitlines()[0] if str(what).strip() else type(what).__name__
    return f"{type(what).__name__}: {first[:500]}"


COMPONENTS: list[type[Component]] = [ExecuteSQLComponent]
