"""Fakes of external servers for tests."""
