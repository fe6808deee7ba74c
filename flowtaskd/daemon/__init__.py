"""The daemon, the I/O shell around the engine: :mod:`~flowtaskd.daemon.service` is the
composition root; each sub-package owns one concern and receives narrow protocols."""
