"""The ExecutionBroker v1.0 ``kind`` URIs we read and write, and the legacy spellings we tolerate."""

from __future__ import annotations

EB = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types"

OFFERSET = f"{EB}/offerset/execution-offerset-1.0"
SIMPLE_SESSION = f"{EB}/session/simple-execution-session-1.0"
SCHEDULED_SESSION = f"{EB}/session/scheduled-execution-session-1.0"
SIMPLE_COMPUTE = f"{EB}/compute/simple-compute-resource-1.0"
DOCKER = f"{EB}/executable/docker-container-1.0"
SINGULARITY = f"{EB}/executable/singularity-container-1.0"
JUPYTER = f"{EB}/executable/jupyter-notebook-1.0"
# our own executable kind: one of the platform's apps, its options and input file ids
CIRASA_APP = "urn:cirasa:eb:executable:cirasa-app-1.0"

RESULTS_CONNECTOR = "urn:cirasa:eb:connector:uws-results"  # the job's results, as UWS lists them
ARCHIVE_CONNECTOR = "urn:cirasa:eb:connector:job-archive"  # the job's whole directory, as a tar.gz

ENUM_UPDATE = "uri:enum-value-update"
ENUM_OPTION = "uri:enum-value-option"
ERROR = "urn:cirasa:eb:error"

_EXECUTABLES = {
    DOCKER: "docker-container",
    SINGULARITY: "singularity-container",
    JUPYTER: "jupyter-notebook",
    CIRASA_APP: "app",
}


def executable_kind(uri: str) -> str | None:
    """Our name for an executable ``kind`` URI, tolerating older spellings; None when unknown."""
    if uri in _EXECUTABLES:
        return _EXECUTABLES[uri]
    tail = uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".yaml")
    for known, name in _EXECUTABLES.items():
        if known.rsplit("/", 1)[-1] == tail or tail == name or tail == f"{name}-1.0":
            return name
    if tail in ("singular-container-1.0", "oci-container", "oci-container-1.0"):
        return "singularity-container" if tail.startswith("singular") else "docker-container"
    return None


def is_compute_kind(uri: str) -> bool:
    """The simple compute resource, also as ``types/computer/...`` and the later ``kinds/...yaml`` form."""
    return uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".yaml") in (
        "simple-compute-resource-1.0",
        "simple-compute-resource",
        "generic-compute",
    )
