"""The JWT that slurmrestd wants: fixed, from a variable or a file, or minted by a command."""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from cirasa.backends.slurm.errors import SlurmAuthError
from cirasa.backends.slurm.options import SlurmOptions

log = structlog.get_logger(__name__)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without checking the signature; None if absent."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _parse_token_output(text: str) -> str:
    """The token printed by ``scontrol token`` (``SLURM_JWT=...``) or by any command printing it alone."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("SLURM_JWT="):
            line = line.removeprefix("SLURM_JWT=")
        if line:
            return line
    return ""


class TokenSource:
    """Gives the current JWT, renewing it where the configured source allows."""

    def __init__(self, opts: SlurmOptions, clock: Callable[[], float] = time.time) -> None:
        self._opts = opts
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._file_stamp: tuple[int, int] | None = None
        self._warned_expiry: str | None = None

    @property
    def renewable(self) -> bool:
        return self._opts.token is None

    def get(self) -> str:
        with self._lock:
            opts = self._opts
            if opts.token is not None:
                value = opts.token.get_secret_value()
            elif opts.token_env is not None:
                value = os.environ.get(opts.token_env, "").strip()
                if not value:
                    raise SlurmAuthError(f"environment variable {opts.token_env} holds no Slurm token")
            elif opts.token_file is not None:
                value = self._from_file(opts.token_file)
            else:
                value = self._from_command()
            self._warn_if_expiring(value)
            return value

    def invalidate(self, rejected: str) -> bool:
        """slurmrestd rejected ``rejected``: forget it. True when asking again may give another token."""
        with self._lock:
            if self._value == rejected:
                self._value = None
                self._file_stamp = None
        return self.renewable

    def _from_file(self, path: Path) -> str:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if self._value is None or stamp != self._file_stamp:
                value = _parse_token_output(path.read_text(encoding="utf-8"))
                if not value:
                    raise SlurmAuthError(f"token file {path} is empty")
                self._value, self._file_stamp = value, stamp
        except OSError as exc:
            raise SlurmAuthError(f"cannot read the Slurm token file {path}: {exc}") from exc
        return self._value

    def _from_command(self) -> str:
        assert self._opts.token_command is not None
        if self._value is not None:
            exp = jwt_expiry(self._value)
            if exp is None or exp - self._clock() > self._opts.token_renew_before_s:
                return self._value
        argv = self._opts.token_command
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SlurmAuthError(f"token command {argv[0]} could not run: {exc}") from exc
        value = _parse_token_output(done.stdout)
        if done.returncode != 0 or not value:
            raise SlurmAuthError(
                f"token command {argv[0]} failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
            )
        self._value = value
        log.info("slurm.token_renewed", expires_at=jwt_expiry(value))
        return value

    def _warn_if_expiring(self, value: str) -> None:
        exp = jwt_expiry(value)
        if exp is None or exp - self._clock() > self._opts.token_renew_before_s:
            return
        if self._warned_expiry != value:  # once per token
            self._warned_expiry = value
            log.warning("slurm.token_expiring", expires_in_s=round(exp - self._clock()))
