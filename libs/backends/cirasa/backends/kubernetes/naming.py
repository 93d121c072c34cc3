"""Names, labels and annotations that tie Kubernetes objects to CIRASA jobs."""

from __future__ import annotations

import hashlib
import re

CONTAINER_NAME = "job"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "cirasa"
LABEL_PLATFORM = "cirasa.io/platform"
LABEL_JOB_ID = "cirasa.io/job-id"
LABEL_USER = "cirasa.io/user"
LABEL_APP = "cirasa.io/app"
ANN_JOB_ID = "cirasa.io/job-id"
ANN_USER = "cirasa.io/user"
ANN_CANCEL = "cirasa.io/cancel-requested"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
_NOT_HEX = re.compile(r"[^0-9a-f]")


def job_name(job_id: str) -> str:
    """The Job's name: ``cirasa-<first 40 hex of the id>``; ids that are not hex are hashed."""
    hexid = _NOT_HEX.sub("", job_id.lower())
    if len(hexid) < 16 or len(hexid) != len(job_id.replace("-", "")):
        hexid = hashlib.sha256(job_id.encode()).hexdigest()
    return f"cirasa-{hexid[:40]}"


def label_value(value: str) -> str:
    """``value`` as a valid label value (63 chars, alphanumeric ends); long values keep a hash suffix."""
    if _LABEL_VALUE.match(value):
        return value
    cleaned = _NOT_LABEL_CHAR.sub("_", value).strip("_.-")
    if len(cleaned) > 63 or cleaned != value:
        digest = hashlib.sha256(value.encode()).hexdigest()[:10]
        cleaned = f"{cleaned[:52].rstrip('_.-')}-{digest}".lstrip("_.-")
    return cleaned or "unknown"
