"""Compute backends: where and how a job's processes actually run."""
