"""The run engine: a pile run as a DAG (ready queue, trigger rules, attempts and retries,
the ``events:`` actions), the event bus and the run's statistics."""
