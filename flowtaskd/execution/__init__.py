"""Executors: where a step attempt runs (in this process, or on a Dask cluster)."""
