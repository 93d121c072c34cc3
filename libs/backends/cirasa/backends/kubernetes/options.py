"""``PlatformConfig.options`` of a kubernetes platform, validated."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cirasa.backends.kubernetes.naming import DNS_LABEL


class KubernetesOptions(BaseModel):
    """``PlatformConfig.options`` of a kubernetes platform."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None, description="where Jobs go; default: the service account's or the kubeconfig context's"
    )
    in_cluster: bool = Field(False, description="use the pod's service account instead of a kubeconfig")
    kubeconfig: Path | None = Field(None, description="kubeconfig file; default ~/.kube/config")
    context: str | None = Field(None, description="kubeconfig context; default its current one")
    data_pvc: str = Field(description="claim of the shared data volume (uploads and job directories)")
    mount_path: str = Field("/data", description="where the data volume is mounted in job pods")
    service_root: Path | None = Field(
        None,
        description="where the services see the data volume's root (paths under it are mapped to "
        "mount_path in job pods); default: the same path as mount_path",
    )
    runner_image: str | None = Field(None, description="image that runs the Python apps (the cirasa image)")
    runner_python: str | None = Field(
        None, description="interpreter in the runner image; default: the scheduler's own path"
    )
    service_account: str | None = Field(None, description="service account of job pods (no token mounted)")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority_class: str | None = None
    run_as_user: int = Field(10001, ge=1, description="non-root uid of job pods (the services' uid)")
    run_as_group: int = Field(10001, ge=0)
    fs_group: int | None = Field(None, ge=0, description="unset: no recursive chown of the data volume")
    tmp_size_limit: str = Field("1Gi", description="emptyDir at /tmp (the root filesystem is read-only)")
    ttl_seconds_after_finished: int = Field(
        3600,
        ge=0,
        description="finished Jobs are deleted after this; must exceed the longest monitor outage",
    )
    relist_interval_s: float = Field(300.0, gt=0, description="full re-list of Jobs and pods")
    watch_timeout_s: int = Field(240, ge=1, description="server-side timeout of one watch request")
    image_pull_grace_s: float = Field(
        120.0, ge=0, description="a container that cannot be pulled or created this long fails the job"
    )
    sync_timeout_s: float = Field(10.0, gt=0, description="first poll waits this long for the first LIST")
    request_timeout_s: float = Field(30.0, gt=0)
    tombstone_ttl_s: float = Field(86400.0, gt=0, description="how long final states of deleted Jobs stay")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not DNS_LABEL.match(value):
            raise ValueError(f"namespace {value!r} is not a DNS-1123 label")
        return value

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"mount_path {value!r} must be an absolute path without '..'")
        return str(path)

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesOptions:
        if self.in_cluster and (self.kubeconfig is not None or self.context is not None):
            raise ValueError("in_cluster excludes kubeconfig and context")
        return self
