"""Why a resource could not be staged, in one line a user can read.

Every message names the resource and, where there is one, the URL that failed, e.g.
``data 'sky': https://h/x.fits answered 404 Not Found``; the class says what kind of failure it was
(and labels the failures metric, so there are few of them).
"""

from __future__ import annotations


class StagingError(Exception):
    """A resource could not be staged; ``str()`` is one line for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause said

    @property
    def reason(self) -> str:
        """A low-cardinality label for metrics: the class name."""
        return type(self).__name__


class StagingRefused(StagingError):
    """The platform's policy does not allow this resource (scheme, host, checksum form, ...)."""


class ChecksumMismatch(StagingError):
    """The bytes received are not the ones the request's checksum names."""


class TooLarge(StagingError):
    """The resource is larger than the platform stages (or than its whole cache)."""


class FetchFailed(StagingError):
    """The origin could not be reached, answered an error, timed out or broke off the transfer."""
