"""Request checksums, ``<algorithm>:<hex digest>``: parsed once, checked against what arrived."""

from __future__ import annotations

import string

from cirasa.backends.staging.errors import ChecksumMismatch, StagingRefused

ALGORITHMS = {"sha256": 64, "md5": 32}  # algorithm -> length of its hex digest


def parse_checksum(checksum: str | None, label: str) -> tuple[str, str] | None:
    """``"SHA256:AB12..."`` -> ``("sha256", "ab12...")``; None without a checksum."""
    if not checksum:
        return None
    alg, _, digest = checksum.strip().partition(":")
    alg, digest = alg.lower(), digest.lower()
    if ALGORITHMS.get(alg) != len(digest) or not set(digest) <= set(string.hexdigits.lower()):
        raise StagingRefused(
            f"{label}: checksum '{checksum}' is not <algorithm>:<hex digest> with algorithm "
            f"{' or '.join(ALGORITHMS)}"
        )
    return alg, digest


def verify(expected: tuple[str, str] | None, digests: dict[str, str], label: str, origin: str) -> None:
    if expected is None:
        return
    alg, digest = expected
    if digests.get(alg) != digest:
        raise ChecksumMismatch(
            f"{label}: {origin}: the bytes received have {alg} {digests.get(alg)}, not the {digest} requested"
        )
