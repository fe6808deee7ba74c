"""Runs: the run requests, the run manager (queue, limits, overlap), the run store
protocol, the SQLite history and its writer thread, and recording runs into it."""
