"""The pure core: the task model (loading with line numbers, the schema, the DAG, cron
maths, trigger rules, values and masks, problems, rendering). No I/O beyond reading a task
file; nothing of asyncio, subprocess, sqlite3, sockets or threads; components come in as a
catalog (:mod:`flowtaskd.core.catalog`)."""
