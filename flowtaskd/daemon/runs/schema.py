"""The run history's SQL schema and its upgrades (``PRAGMA user_version``).

A new file gets :data:`SCHEMA`; an older one runs the statements of :data:`UPGRADES` from
its version on (``UPGRADES[1]`` takes version 1 to 2).
"""

from __future__ import annotations

__all__ = ["INDEXES", "SCHEMA", "SCHEMA_VERSION", "UPGRADES"]

SCHEMA_VERSION = 2
_V1_TO_V2 = (
    "ALTER TABLE runs ADD COLUMN retry_of TEXT",
    "ALTER TABLE runs ADD COLUMN logical_time REAL",
    "ALTER TABLE runs ADD COLUMN backfill_id TEXT",
    "CREATE TABLE definitions (digest TEXT PRIMARY KEY, definition TEXT NOT NULL)",
    """CREATE TABLE run_definitions (
        run_id TEXT PRIMARY KEY REFERENCES runs ON DELETE CASCADE, digest TEXT NOT NULL)""",
    "CREATE INDEX run_definitions_digest ON run_definitions (digest)",
    """CREATE TRIGGER definitions_unused AFTER DELETE ON run_definitions BEGIN
        DELETE FROM definitions WHERE digest = old.digest
        AND NOT EXISTS (SELECT 1 FROM run_definitions WHERE digest = old.digest); END""",
    "CREATE TABLE pauses (target TEXT PRIMARY KEY, paused_at REAL NOT NULL)",
    "CREATE INDEX runs_retry_of ON runs (retry_of)",
)
SCHEMA = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, task TEXT NOT NULL, trigger TEXT NOT NULL, source TEXT,
        params TEXT, status TEXT NOT NULL, queued_at REAL, started_at REAL, finished_at REAL,
        duration REAL, error TEXT, stats TEXT, log_dir TEXT, inbox_file TEXT, schedule_id TEXT)""",
    """CREATE TABLE step_attempts (
        run_id TEXT REFERENCES runs ON DELETE CASCADE, step_id TEXT, attempt INTEGER,
        status TEXT, started_at REAL, finished_at REAL, duration REAL, exit_code INTEGER,
        cpu_user REAL, cpu_system REAL, max_rss_kb INTEGER, bytes_out INTEGER, error TEXT,
        log_path TEXT, PRIMARY KEY (run_id, step_id, attempt))""",
    """CREATE TABLE schedule_state (schedule_id TEXT PRIMARY KEY, last_fire REAL NOT NULL)""",
    "CREATE INDEX runs_task_started ON runs (task, started_at)",
    "CREATE INDEX runs_status ON runs (status)",
    *_V1_TO_V2,
)
UPGRADES: dict[int, tuple[str, ...]] = {1: _V1_TO_V2}
_NEWEST_KEY = "COALESCE(started_at, queued_at, finished_at)"
INDEXES = (  # made in every history, old ones too: no schema version needed
    f"CREATE INDEX IF NOT EXISTS runs_newest ON runs ({_NEWEST_KEY})",
    f"CREATE INDEX IF NOT EXISTS runs_task_newest ON runs (task, {_NEWEST_KEY})",
)
