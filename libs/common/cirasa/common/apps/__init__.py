"""Runnable apps: each is started as ``python -m cirasa.common.apps.<module>`` in its job directory."""
