"""What a platform agrees to fetch: URL schemes, hosts, sizes, time limits and credentials."""

from __future__ import annotations

import fnmatch
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cirasa.backends.staging.errors import StagingRefused

GIB = 1024**3

# Schemes whose URLs are contacted as such: their host is checked. s3:// names a bucket and ivo:// an
# authority, neither of them a host; the S3 endpoint and DataLink URLs they lead to are checked instead.
CONTACTED_SCHEMES = frozenset({"http", "https"})


class StagingPolicy(BaseModel):
    """A platform's staging rules. Every URL actually contacted is passed to ``check_url`` first:
    each redirect, the S3 endpoint (every request to it), DataLink services and the links they give."""

    model_config = ConfigDict(extra="forbid")

    allowed_schemes: list[str] = Field(
        default_factory=lambda: ["https", "http", "s3", "ivo"], description="URL schemes allowed"
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"], description="fnmatch patterns of the hosts (or host:port) allowed"
    )
    max_resource_bytes: int = Field(20 * GIB, gt=0, description="the largest resource staged")
    timeout_s: float = Field(600.0, gt=0, description="the whole transfer of one resource")
    connect_timeout_s: float = Field(10.0, gt=0)
    s3_access_key: str | None = Field(None, description="None: boto3's usual credential chain")
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    datalink_services: dict[str, str] = Field(
        default_factory=dict,
        description="ivo authority or prefix (ivo://example.org/survey) -> DataLink service URL",
    )

    def check_url(self, url: str) -> None:
        """Raise StagingRefused, saying what is allowed, unless this URL may be contacted."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        allowed = [s.lower() for s in self.allowed_schemes]
        if scheme not in allowed:
            raise StagingRefused(
                f"{url}: scheme '{scheme or '(none)'}' is not allowed here (allowed: {', '.join(allowed)})"
            )
        if scheme not in CONTACTED_SCHEMES:
            return
        try:
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError as exc:  # a port that is not a number
            raise StagingRefused(f"{url}: not a valid URL ({exc})") from None
        if not host:
            raise StagingRefused(f"{url}: the URL names no host")
        names = [host] if port is None else [host, f"{host}:{port}"]
        if not any(fnmatch.fnmatchcase(n, p.lower()) for n in names for p in self.allowed_hosts):
            raise StagingRefused(
                f"{url}: host '{host}' is not allowed here (allowed hosts: {', '.join(self.allowed_hosts)})"
            )

    def datalink_service_for(self, identifier: str) -> str | None:
        """The DataLink service of the longest configured prefix of an ivo:// identifier (compared
        without case, as IVOA identifiers are), matching only at a boundary: the prefix
        ivo://example.org serves ivo://example.org/survey?x but not ivo://example.orgy."""
        ident = identifier.lower()
        best: tuple[int, str] | None = None
        for prefix, service in self.datalink_services.items():
            p = prefix.lower().rstrip("/")
            matches = ident == p or (ident.startswith(p) and ident[len(p)] in "/?#")
            if matches and (best is None or len(p) > best[0]):
                best = (len(p), service)
        return best[1] if best else None
