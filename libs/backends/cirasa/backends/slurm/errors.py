"""The errors of the Slurm backend."""

from __future__ import annotations

from cirasa.backends.base import BackendUnavailable


class SlurmError(BackendUnavailable):
    """slurmrestd refused a request or could not be reached.

    It derives from BackendUnavailable on purpose: the scheduler turns that into a FAILURE of the job
    carrying this message (instead of an unhandled exception), and the monitor's poll loop logs it and
    tries again in its next round without changing any job.
    """


class SlurmConfigError(SlurmError):
    """The platform's Slurm options are invalid (BackendUnavailable: the monitor fails its jobs)."""


class SlurmAuthError(SlurmError):
    """No usable token (missing, unreadable, or rejected by slurmrestd)."""
