"""A Job and its pods (as the watches cached them) translated into our job states and texts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cirasa.backends.base import BackendStatus
from cirasa.backends.kubernetes.naming import ANN_CANCEL, ANN_JOB_ID, CONTAINER_NAME, LABEL_JOB_ID
from cirasa.backends.stderr_reason import last_meaningful_line, with_reason
from cirasa.common.events import JobState

TIMEOUT_EXIT_CODE = 124  # as the local runner: coreutils ``timeout``'s convention
CANCEL_EXIT_CODE = -1

# Waiting reasons that mean the container will not start as things are; the first two are
# retried by the kubelet, so they become a failure only after ``image_pull_grace_s``.
_RETRIED_START_ERRORS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError"}
)
_PERMANENT_START_ERRORS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_IMAGE_ERRORS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dig(obj: Mapping[str, Any] | None, *keys: str) -> Any:
    """``obj[keys[0]][keys[1]]...``, or None where a level is missing or not a mapping."""
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def job_id_of(obj: Mapping[str, Any]) -> str | None:
    value = dig(obj, "metadata", "annotations", ANN_JOB_ID) or dig(obj, "metadata", "labels", LABEL_JOB_ID)
    return value if isinstance(value, str) else None


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conds = dig(job, "status", "conditions") or []
    return {c.get("type", ""): c for c in conds if isinstance(c, Mapping) and c.get("status") == "True"}


def _container_status(pod: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    statuses = [s for s in (dig(pod, "status", "containerStatuses") or []) if isinstance(s, Mapping)]
    for status in statuses:
        if status.get("name") == CONTAINER_NAME:
            return status
    return statuses[0] if statuses else None


def _terminated(cs: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    term = dig(cs, "state", "terminated") or dig(cs, "lastState", "terminated")
    return term if isinstance(term, Mapping) else None


def _newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not pods:
        return None
    return max(
        pods, key=lambda p: (str(dig(p, "metadata", "creationTimestamp") or ""), dig(p, "metadata", "name"))
    )


def pod_unfinished(pods: Sequence[Mapping[str, Any]]) -> bool:
    pod = _newest_pod(pods)
    if pod is None:
        return False
    phase = dig(pod, "status", "phase")
    return phase not in ("Failed", "Succeeded") and _terminated(_container_status(pod)) is None


def _memory_limit(job: Mapping[str, Any]) -> str | None:
    for c in dig(job, "spec", "template", "spec", "containers") or []:
        if isinstance(c, Mapping) and c.get("name") == CONTAINER_NAME:
            value = dig(c, "resources", "limits", "memory")
            return str(value) if value is not None else None
    return None


def _last_line(message: Any) -> str:
    """The last meaningful line of a container's termination message (its log's tail on error)."""
    return last_meaningful_line(message) if isinstance(message, str) else ""


@dataclass(frozen=True)
class StartProblem:
    """A container that cannot start: an image pull or configuration error."""

    reason: str
    message: str
    image: str
    permanent: bool

    def text(self) -> str:
        what = (
            f"Image {self.image} could not be pulled"
            if self.reason in _IMAGE_ERRORS
            else ("The job's container could not be created")
        )
        return f"{what} ({self.reason})" + (f": {self.message}" if self.message else "")


def start_problem(pods: Sequence[Mapping[str, Any]]) -> StartProblem | None:
    cs = _container_status(_newest_pod(pods))
    waiting = dig(cs, "state", "waiting")
    reason = dig(waiting, "reason")
    if reason not in _RETRIED_START_ERRORS and reason not in _PERMANENT_START_ERRORS:
        return None
    return StartProblem(
        reason=str(reason),
        message=str(dig(waiting, "message") or ""),
        image=str(dig(cs, "image") or "?"),
        permanent=reason in _PERMANENT_START_ERRORS,
    )


def _pod_failure(job: Mapping[str, Any], pod: Mapping[str, Any] | None) -> tuple[str | None, int]:
    """Why the pod failed, in words, and the container's exit code (-1 when unknown)."""
    cs = _container_status(pod)
    term = _terminated(cs)
    exit_code = int(term["exitCode"]) if term and isinstance(term.get("exitCode"), int) else -1
    pod_reason = dig(pod, "status", "reason")
    pod_message = dig(pod, "status", "message") or ""
    code = f"; exit code {exit_code}" if exit_code != -1 else ""
    if pod_reason == "Evicted":
        return f"Job's pod was evicted (Evicted): {pod_message}".rstrip(": ") + code, exit_code
    if term is not None:
        reason = term.get("reason")
        if reason == "OOMKilled":
            limit = _memory_limit(job)
            at = f" at its limit of {limit}" if limit else ""
            return f"Job ran out of memory{at} and was killed (OOMKilled){code}", exit_code
        if reason in ("ContainerCannotRun", "StartError"):
            return f"Job could not be started ({reason}): {_last_line(term.get('message'))}{code}", exit_code
        if exit_code != -1:
            tail = _last_line(term.get("message"))
            return with_reason(f"Process terminated with return code {exit_code}", tail), exit_code
    if pod_reason:
        return f"Job's pod failed ({pod_reason}): {pod_message}".rstrip(": "), exit_code
    return None, exit_code


def job_status(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> BackendStatus:
    """Our view of a Job from its object and its pods (as cached from the watches)."""
    now = now or datetime.now(UTC)
    pod = _newest_pod(pods)
    cs = _container_status(pod)
    term = _terminated(cs)
    started_at = _time(dig(cs, "state", "running", "startedAt")) or _time(dig(term, "startedAt"))
    ended = _ended(job, pod, term, started_at, now)
    if ended is not None:
        return ended
    elapsed = _elapsed(started_at, None, now)
    if dig(cs, "state", "running") is not None or dig(pod, "status", "phase") == "Running":
        return BackendStatus(JobState.RUNNING, "Process is running", elapsed_s=elapsed, started_at=started_at)
    if term is not None:
        # the container ended but the Job controller has not said so yet: still running for us
        return BackendStatus(JobState.RUNNING, "Process has ended", elapsed_s=elapsed, started_at=started_at)
    return _waiting(pods, pod, cs)


def _elapsed(started_at: datetime | None, finished: datetime | None, now: datetime) -> float:
    if started_at is None:
        return 0.0
    return max(0.0, ((finished or now) - started_at).total_seconds())


def _ended(
    job: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    term: Mapping[str, Any] | None,
    started_at: datetime | None,
    now: datetime,
) -> BackendStatus | None:
    """The final state of a Job that succeeded, failed or was canceled; None while it is not over."""
    conds = _true_conditions(job)
    done = conds.get("Complete") or conds.get("SuccessCriteriaMet")
    if done is not None:
        finished = _time(dig(job, "status", "completionTime")) or _time(dig(term, "finishedAt"))
        finished = finished or _time(done.get("lastTransitionTime"))
        started_at = started_at or _time(dig(job, "status", "startTime"))
        return BackendStatus(
            JobState.SUCCESS,
            "Process terminated with success",
            exit_code=0,
            elapsed_s=_elapsed(started_at, finished, now),
            started_at=started_at,
            finished_at=finished,
        )
    failed = conds.get("Failed") or conds.get("FailureTarget")
    if failed is not None:
        return _failed(job, pod, term, failed, started_at, now)
    if dig(job, "metadata", "annotations", ANN_CANCEL):
        return BackendStatus(
            JobState.CANCELED,
            "Job canceled by user",
            exit_code=CANCEL_EXIT_CODE,
            elapsed_s=_elapsed(started_at, now, now),
            started_at=started_at,
            finished_at=now,
        )
    return None


def _failed(
    job: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    term: Mapping[str, Any] | None,
    failed: Mapping[str, Any],
    started_at: datetime | None,
    now: datetime,
) -> BackendStatus:
    """A Job with a true ``Failed`` (or ``FailureTarget``) condition: timed out, or failed and why."""
    finished = _time(dig(term, "finishedAt")) or _time(failed.get("lastTransitionTime")) or now
    reason = failed.get("reason") or "Failed"
    if reason == "DeadlineExceeded":
        limit = dig(job, "spec", "activeDeadlineSeconds")
        return BackendStatus(
            JobState.TIMED_OUT,
            f"Job exceeded its wall-time limit of {limit} s (DeadlineExceeded)",
            exit_code=TIMEOUT_EXIT_CODE,
            elapsed_s=_elapsed(started_at, finished, now),
            started_at=started_at,
            finished_at=finished,
        )
    text, exit_code = _pod_failure(job, pod)
    if text is None:
        message = failed.get("message") or ""
        text = f"Job failed ({reason})" + (f": {message}" if message else "")
    return BackendStatus(
        JobState.FAILURE,
        text,
        exit_code=exit_code,
        elapsed_s=_elapsed(started_at, finished, now),
        started_at=started_at,
        finished_at=finished,
    )


def _waiting(
    pods: Sequence[Mapping[str, Any]], pod: Mapping[str, Any] | None, cs: Mapping[str, Any] | None
) -> BackendStatus:
    """A Job whose container has not started yet, and what it waits for."""
    problem = start_problem(pods)
    if problem is not None:
        return BackendStatus(JobState.PENDING, f"{problem.text()}; retrying")
    for cond in dig(pod, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            why = cond.get("message") or cond.get("reason") or "no node fits"
            return BackendStatus(JobState.PENDING, f"Waiting for a node: {why}")
    waiting = dig(cs, "state", "waiting", "reason")
    if waiting:
        return BackendStatus(JobState.PENDING, f"Job is starting ({waiting})")
    return BackendStatus(JobState.PENDING, "Job is waiting to start")
