"""Slurm's job records (``GET /jobs`` items) translated into our job states and texts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cirasa.backends.base import BackendStatus
from cirasa.common.events import JobState

TERMINAL_SLURM_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
    }
)

# Slurm states that end a job with FAILURE, and what to tell the user (caesar-rest §3.4 plus reasons).
_FAILURE_TEXT = {
    "FAILED": "Job completed execution unsuccessfully",
    "NODE_FAIL": "Job terminated due to the failure of one of its nodes",
    "PREEMPTED": "Job terminated due to preemption",
    "BOOT_FAIL": "Job terminated because its node failed to boot",
    "DEADLINE": "Job terminated on its deadline",
    "OUT_OF_MEMORY": "Job ran out of memory",
}
# non-final states: ours, and the text
_ACTIVE_STATES: dict[str, tuple[JobState, str]] = {
    "PENDING": (JobState.PENDING, "Job queued and waiting for initiation"),
    "CONFIGURING": (JobState.PENDING, "Job allocated, waiting for its nodes to become ready"),
    "REQUEUED": (JobState.PENDING, "Job requeued"),
    "REQUEUE_HOLD": (JobState.PENDING, "Job requeued and held"),
    "REQUEUE_FED": (JobState.PENDING, "Job requeued by the federation"),
    "RESV_DEL_HOLD": (JobState.PENDING, "Job held after its reservation was deleted"),
    "RUNNING": (JobState.RUNNING, "Job executing"),
    "COMPLETING": (JobState.RUNNING, "Job completing"),
    "SIGNALING": (JobState.RUNNING, "Job executing (being signaled)"),
    "STAGE_OUT": (JobState.RUNNING, "Job staging out"),
    "RESIZING": (JobState.RUNNING, "Job executing (being resized)"),
    # caesar-rest maps SUSPENDED to PENDING. A suspended job has started, though: going back to PENDING
    # would regress the state machine and make the monitor's start-timeout fail it. It stays RUNNING.
    "SUSPENDED": (JobState.RUNNING, "Job was suspended"),
    "STOPPED": (JobState.RUNNING, "Job was stopped"),
}


def int_or(value: Any, default: int = 0) -> int:
    """``value`` when it is an int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def base_state(value: Any) -> str:
    """``job_state``: a string up to v0.0.38, a list of state + flags from v0.0.39 on."""
    if isinstance(value, list):
        known = [
            str(v).upper() for v in value if str(v).upper() in TERMINAL_SLURM_STATES | _ACTIVE_STATES.keys()
        ]
        return known[0] if known else (str(value[0]).upper() if value else "")
    return str(value or "").upper()


def decode_exit_status(raw: int) -> tuple[int | None, int | None]:
    """Slurm's ``exit_code``, a raw wait status: (return code, None) or (None, signal number).

    (None, None) when it cannot be one: after a launch failure Slurm stores its own error number there
    (e.g. 4021), which has both a "signal" and an "exit code" part.
    """
    signal, code = raw & 0x7F, raw >> 8
    if raw < 0 or code > 0xFF or (signal and code):
        return None, None
    if signal:
        return None, signal
    return code, None


def _stamp(epoch: Any) -> datetime | None:
    value = int_or(epoch)
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


def _has_started(record: Mapping[str, Any], state: str) -> bool:
    """Whether the job ever ran. ``start_time`` alone does not say it: it is the *expected* start of a
    pending job, and the cancel time of a job cancelled while pending."""
    if state in _ACTIVE_STATES:
        return _ACTIVE_STATES[state][0] is JobState.RUNNING
    flags = record.get("flags") or []
    return "JOB_WAS_RUNNING" in flags or bool(record.get("batch_host"))


def job_status(record: Mapping[str, Any], now: float) -> BackendStatus:
    """Our view of one Slurm job record (``GET /jobs`` item)."""
    state = base_state(record.get("job_state"))
    reason = str(record.get("state_reason") or "")
    started = _has_started(record, state)
    started_at = _stamp(record.get("start_time")) if started else None
    finished_at = _stamp(record.get("end_time")) if state in TERMINAL_SLURM_STATES and started else None

    elapsed = 0.0
    if started_at is not None:
        end = finished_at.timestamp() if finished_at is not None else now
        elapsed = max(0.0, end - started_at.timestamp())

    def status(ours: JobState, text: str, exit_code: int = -1) -> BackendStatus:
        return BackendStatus(ours, text, exit_code, elapsed, started_at, finished_at)

    if state in _ACTIVE_STATES:
        ours, text = _ACTIVE_STATES[state]
        if ours is JobState.PENDING and reason not in ("", "None"):
            text = f"{text} ({reason})"
        return status(ours, text)

    raw = int_or(record.get("exit_code"))
    code, signal = decode_exit_status(raw)
    if state == "COMPLETED":
        return status(JobState.SUCCESS, "Job completed execution successfully", code or 0)
    if state == "CANCELLED":
        # the project's convention for canceled jobs (local backend, caesar-rest) is exit code -1
        return status(JobState.CANCELED, "Job was canceled", -1)
    if state == "TIMEOUT":
        # 124 like the local backend and coreutils timeout; Slurm's SIGTERM is in the text
        how = f", stopped with signal {signal}" if signal else ""
        return status(JobState.TIMED_OUT, f"Job terminated due to time limit reached{how}", 124)
    if state in _FAILURE_TEXT:
        text = _FAILURE_TEXT[state]
        if signal is not None:
            detail, exit_code = f"killed by signal {signal}", -signal
        elif code:
            detail, exit_code = f"exit code {code}", code
        else:
            detail, exit_code = "", -1
        decoded = code is not None or signal is not None
        extras = [detail] if detail else []
        if reason == "JobLaunchFailure" and not decoded:
            extras.append(
                f"Slurm error {raw}: check that the job directory exists and is writable on the cluster"
            )
        elif reason not in ("", "None", "NonZeroExitCode", "JobLaunchFailure"):
            # (Slurm says JobLaunchFailure also when the batch script was killed by a signal)
            extras.append(reason)
        return status(JobState.FAILURE, text + (f" ({'; '.join(extras)})" if extras else ""), exit_code)
    # an unknown state: keep the job alive (the monitor's reconciliation bounds it) and say what we saw
    ours = JobState.RUNNING if started else JobState.PENDING
    return status(ours, f"Job currently in unknown state (raw state={state or '?'})")
