"""The platform options of the Slurm backend, validated."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class SlurmOptions(BaseModel):
    """``PlatformConfig.options`` of a Slurm platform."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="slurmrestd base URL")
    api_version: Literal["v0.0.36", "v0.0.37", "v0.0.38"] = Field(
        "v0.0.38", description="the request/answer formats implemented here (Slurm 20.11 to 22.05)"
    )
    user: str = Field(min_length=1, description="X-SLURM-USER-NAME: the Slurm user jobs run as")
    allow_root: bool = Field(
        False, description="let jobs run as root (a throw-away test cluster only: jobs run user-chosen code)"
    )
    token: SecretStr | None = Field(None, description="a fixed JWT (no renewal)")
    token_file: Path | None = Field(None, description="file holding the JWT; re-read when it changes")
    token_env: str | None = Field(None, description="environment variable holding the JWT")
    token_command: list[str] | None = Field(
        None, description="argv printing a JWT (or SLURM_JWT=...), run again before the token expires"
    )
    token_renew_before_s: float = Field(300.0, ge=0, description="renew a minted token this long before")
    partition: str | None = None
    account: str | None = None
    cluster_data_dir: str | None = Field(None, description="CIRASA_DATA_DIR as the cluster sees it")
    cluster_jobs_dir: str | None = Field(None, description="CIRASA_JOBS_DIR as the cluster sees it")
    python: str | None = Field(
        None, description="Python on the cluster replacing argv[0] of Python apps (default: argv as is)"
    )
    container_command: str = Field("singularity", description="singularity or apptainer (name or path)")
    container_options: list[str] = Field(
        default_factory=list, description="extra words after `run`, e.g. [--nv] or [--cleanenv]"
    )
    container_bind: bool = Field(True, description="bind the (cluster) data and jobs dirs into the image")
    environment: dict[str, str] = Field(
        default_factory=lambda: {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        description="base environment of every job (Slurm needs at least one variable)",
    )
    request_timeout_s: float = Field(30.0, gt=0)
    verify_tls: bool = True

    @model_validator(mode="after")
    def _unprivileged(self) -> SlurmOptions:
        if self.user == "root" and not self.allow_root:
            raise ValueError(
                "Slurm jobs must run as an unprivileged account: set user to one (or allow_root: true "
                "on a throw-away test cluster)"
            )
        return self

    @model_validator(mode="after")
    def _one_token_source(self) -> SlurmOptions:
        sources = [
            name
            for name in ("token", "token_file", "token_env", "token_command")
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "exactly one of token, token_file, token_env, token_command must be set"
                + (f" (got {', '.join(sources)})" if sources else "")
            )
        return self

    @field_validator("cluster_data_dir", "cluster_jobs_dir", "python")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path on the cluster")
        return value

    @field_validator("cluster_data_dir", "cluster_jobs_dir")
    @classmethod
    def _bindable(cls, value: str | None) -> str | None:
        if value is not None and ("," in value or ":" in value):
            raise ValueError(f"{value!r}: ',' and ':' cannot be used in a container --bind path")
        return value

    @field_validator("token_command")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("token_command must name a program")
        return value
