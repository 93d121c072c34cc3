"""Settings from environment variables (``CIRASA_*``) and an optional YAML file (``CIRASA_CONFIG``).

Environment variables win over the file; nested values use ``__`` (``CIRASA_GATEWAY__MAX_UPLOAD_MIB``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

BackendKind = Literal["local", "slurm", "kubernetes"]


class PlatformConfig(BaseModel):
    """One compute platform the planner may offer."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    backend: BackendKind = "local"
    cores: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    max_duration_s: int = Field(ge=1)
    apps: list[str] | None = Field(None, description="apps it can run; None means every runnable app")
    containers: dict[str, str] = Field(
        default_factory=dict,
        description="container images it provides, by app name (a docker image, or a .sif path on Slurm)",
    )
    offer_ttl_s: int = Field(
        60, ge=1, le=3600, description="how long an unaccepted offer holds its reservation"
    )
    offer_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="the share of cores and memory one user's unaccepted offers may hold at once",
    )
    start_timeout_s: float | None = Field(
        None,
        gt=0,
        description="dispatched jobs that have not started after this fail (default: the monitor's)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="backend connection settings, validated by the backend itself"
    )


def _default_platforms() -> list[PlatformConfig]:
    cores = max(1, os.cpu_count() or 1)
    return [
        PlatformConfig(name="local", backend="local", cores=cores, memory_gib=4.0, max_duration_s=6 * 3600)
    ]


class AuthSettings(BaseModel):
    """OIDC bearer tokens (JWTs) checked against the issuer's keys; off means everyone is ``anonymous``."""

    enabled: bool = False
    issuer: str | None = Field(None, description="expected iss claim")
    audience: str | None = Field(None, description="expected aud claim")
    jwks_url: str | None = Field(None, description="the issuer's JSON Web Key Set")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    username_claim: str = Field("email", description="claim naming the user (caesar-rest used email)")
    leeway_s: int = Field(30, ge=0, description="clock skew allowed on exp and nbf")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> AuthSettings:
        if self.enabled and not (self.issuer and self.audience and self.jwks_url):
            raise ValueError("auth.enabled needs auth.issuer, auth.audience and auth.jwks_url")
        return self


class QuotaSettings(BaseModel):
    """Per-user limits the gateway enforces atomically (see gateway/quotas.py)."""

    active_jobs: int = Field(100, ge=1, description="jobs PENDING or RUNNING at once, per user")
    stored_gib: float = Field(50.0, gt=0, description="uploaded files kept, per user")
    retry_after_s: int = Field(30, ge=1, description="what a 429 tells the client to wait")
    recount_interval_s: float = Field(60.0, gt=0, description="counters repaired from the stored truth")


class GatewaySettings(BaseModel):
    max_upload_mib: int = Field(1024, ge=1, description="largest accepted upload")
    auto_accept: bool = True
    auth: AuthSettings = Field(default_factory=AuthSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    repropose_after_s: float = Field(
        120.0, gt=0, description="a pending job with no answer this long is proposed again"
    )
    repropose_attempts: int = Field(
        5, ge=0, description="proposals sent again before such a job is aborted with a reason"
    )
    admission_limit: int = Field(
        128, ge=1, description="submissions of one gateway waiting for the planner's first answer at once"
    )
    admission_wait_s: float = Field(
        10.0, ge=0, description="how long a submission waits for room under that limit before a 503"
    )


class HttpLimits(BaseModel):
    """How long a client may take to send a request, and how many may wait (see common/connections.py)."""

    header_timeout_s: float = Field(10.0, gt=0, description="a request head must arrive within this")
    body_idle_s: float = Field(30.0, gt=0, description="a request body may pause at most this long")
    waiting_per_client: int = Field(64, ge=1, description="connections one address may hold idle")
    waiting_total: int = Field(512, ge=1, description="idle connections in all")


class MonitorSettings(BaseModel):
    poll_interval_s: float = Field(0.25, gt=0)
    reconcile_interval_s: float = Field(10.0, gt=0)
    start_timeout_s: float = Field(
        300.0, gt=0, description="dispatched jobs that never start fail after this"
    )
    submit_timeout_s: float = Field(
        600.0, gt=0, description="submitted jobs never dispatched fail after this"
    )


class StagingSettings(BaseModel):
    """Where and how platforms stage ExecutionBroker data before a job starts, and what the planner
    assumes of a transfer until it has measured one."""

    cache_dir: Path | None = Field(None, description="root of the platforms' caches; unset: data_dir/cache")
    cache_max_gib: float = Field(50.0, gt=0, description="each platform's cache is evicted (LRU) above this")
    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="allowed schemes and hosts, size and time limits, S3 credentials, DataLink services "
        "(cirasa.backends.staging.StagingPolicy)",
    )
    assumed_bandwidth_mbps: float = Field(
        10.0, gt=0, description="MB/s from an origin not yet measured (then learnt per origin)"
    )
    assumed_size_mb: float = Field(100.0, ge=0, description="size of a resource that declares none")
    setup_s: float = Field(1.0, ge=0, description="per resource not in the cache: connection and checks")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIRASA_", env_nested_delimiter="__", extra="ignore")

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "cirasa.events"
    mongodb_url: str | None = Field(None, description="unset means the in-memory store")
    db_prefix: str = "cirasa"
    data_dir: Path = Path("var/data")
    jobs_dir: Path = Path("var/jobs")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    prefetch: int = Field(32, ge=1)
    outbox_sweep_s: float = Field(2.0, gt=0)
    platforms: list[PlatformConfig] = Field(default_factory=_default_platforms)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    http_limits: HttpLimits = Field(default_factory=HttpLimits)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    staging: StagingSettings = Field(default_factory=StagingSettings)

    def platform(self, name: str) -> PlatformConfig:
        for p in self.platforms:
            if p.name == name:
                return p
        raise KeyError(f"no platform named {name!r} is configured")

    @field_validator("platforms")
    @classmethod
    def _unique_names(cls, value: list[PlatformConfig]) -> list[PlatformConfig]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError(f"platform names must be unique, got {names}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CIRASA_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"CIRASA_CONFIG points to {config_file!r}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
