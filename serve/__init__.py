"""Serve entry points (``serve run serve.app:app index_dir=…``, ``serve deploy serve/config.yaml``)."""
