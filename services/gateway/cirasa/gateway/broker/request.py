"""Reading an ExecutionRequest (JSON or YAML, v1.0 ``kind``/``meta`` or the legacy ``type`` shapes).

Structural problems (not a mapping, a number that is not a number, an unparseable date) are the
client's error: ``BadRequest`` → 400. Things we understand but cannot do (an unknown executable
kind, an unknown app) are not errors: they become a NO with messages, as the specification says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from cirasa.common.events import DataSource, ResourceRequest, VolumeMount, as_utc, utcnow
from cirasa.finders.registry import OptionError, get_app
from cirasa.gateway.bodies import load_json, load_yaml
from cirasa.gateway.broker import kinds
from cirasa.gateway.broker.data import notebook_source, read_plan
from cirasa.gateway.errors import BadRequest

MAX_BODY = 1024 * 1024
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")
_INSTANT: TypeAdapter[datetime] = TypeAdapter(datetime)
# Start windows outside these years are refused: nobody means them, and arithmetic on them overflows.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


@dataclass
class ParsedRequest:
    executable: dict[str, Any]
    executable_kind: str
    app: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    input_ids: list[str] = field(default_factory=list)
    image: str | None = None
    command: list[str] = field(default_factory=list)
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    start_after: datetime | None = None
    start_before: datetime | None = None
    compute_name: str | None = None
    staging: list[DataSource] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    no: list[str] = field(default_factory=list)  # reasons for a NO found while reading
    warnings: list[str] = field(default_factory=list)


def load_body(raw: bytes, content_type: str | None) -> Any:
    """The body (at most ``MAX_BODY`` bytes, as the route reads it) as JSON, or YAML when it says so."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    is_yaml = "yaml" in ctype or "yml" in ctype
    try:
        return load_yaml(raw.decode("utf-8")) if is_yaml else load_json(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise BadRequest(f"body is not valid {'YAML' if is_yaml else 'JSON'}: {exc}") from exc


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object")
    return value


def _minmax(block: Any, where: str, default: int) -> tuple[int, int]:
    if block is None:
        return default, default
    if isinstance(block, dict) and "requested" in block:  # legacy {requested: {min, max}}
        block = block["requested"]
    if isinstance(block, int) and not isinstance(block, bool):
        return block, block
    data = _mapping(block, where)
    lo, hi = data.get("min"), data.get("max")
    for v in (lo, hi):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise BadRequest(f"{where}.min and {where}.max must be positive integers")
    lo = lo if lo is not None else (hi if hi is not None else default)
    hi = hi if hi is not None else lo
    if hi < lo:
        raise BadRequest(f"{where}.max ({hi}) is below {where}.min ({lo})")
    return lo, hi


def _interval(text: Any) -> tuple[datetime, datetime]:
    if not isinstance(text, str) or "/" not in text:
        raise BadRequest("schedule.requested.start must be an ISO-8601 interval: start/end or start/duration")
    left, right = text.split("/", 1)
    try:
        if left.startswith("P"):
            end = _INSTANT.validate_python(right)
            window = end - _DURATION.validate_python(left), end
        elif right.startswith("P"):
            start = _INSTANT.validate_python(left)
            window = start, start + _DURATION.validate_python(right)
        else:
            window = _INSTANT.validate_python(left), _INSTANT.validate_python(right)
    except (ValidationError, OverflowError) as exc:
        raise BadRequest(f"schedule.requested.start {text!r} is not an ISO-8601 interval") from exc
    window = as_utc(window[0]), as_utc(window[1])
    if not all(EARLIEST <= moment <= LATEST for moment in window):
        raise BadRequest(
            f"schedule.requested.start {text!r} must lie between {EARLIEST.year} and {LATEST.year - 1}"
        )
    return window


def _resources(base: ResourceRequest, update: dict[str, Any], where: str) -> ResourceRequest:
    """``base`` with ``update``, within the bounds every event carrying it must respect."""
    try:
        return ResourceRequest.model_validate(base.model_dump() | update)
    except ValidationError as exc:
        bounds = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"{where} out of bounds ({bounds})") from None


def parse_request(body: Any, limits: tuple[int, float, int]) -> ParsedRequest:
    """``limits``: the largest platform's cores, memory in GiB and duration in seconds (for capping max)."""
    data = _mapping(body, "the request")
    raw_exe = data.get("executable")
    if raw_exe is None:
        raise BadRequest("the request has no executable")
    exe = _mapping(raw_exe, "executable")
    uri = exe.get("kind") or exe.get("type")
    if not isinstance(uri, str):
        raise BadRequest("executable.kind is missing")
    name = kinds.executable_kind(uri)
    parsed = ParsedRequest(executable=exe, executable_kind=name or "unknown")
    if name is None:
        parsed.no.append(
            f"unknown executable kind {uri!r}; known: docker-container, singularity-container, "
            f"jupyter-notebook and {kinds.CIRASA_APP}"
        )
    elif name == "app":
        _read_app(exe, parsed)
    elif name == "docker-container":
        image = exe.get("image") or {}
        locations = image.get("locations") if isinstance(image, dict) else None
        if not locations or not isinstance(locations, list) or not all(isinstance(x, str) for x in locations):
            parsed.no.append("docker-container needs image.locations")
        elif exe.get("privileged"):
            parsed.no.append("privileged containers are not run")
        else:
            parsed.image = locations[0]
            parsed.command = [str(x) for x in exe.get("command") or []]
    elif name == "singularity-container":
        if not isinstance(exe.get("location"), str):
            parsed.no.append("singularity-container needs a location")
        else:
            parsed.image = exe["location"]
    elif name == "jupyter-notebook":
        _read_notebook(exe, parsed)
    compute = data.get("compute") or data.get("computer")
    if isinstance(compute, list):  # the EB draft's resources.compute[]: the first
        compute = compute[0] if compute else None
    _read_compute(compute, parsed, limits)
    plan = read_plan(data, compute if isinstance(compute, dict) else None)
    parsed.staging += plan.staging
    parsed.volumes, parsed.no = plan.volumes, parsed.no + plan.no
    _read_schedule(data.get("schedule"), parsed, limits[2])
    return parsed


def _read_notebook(exe: dict[str, Any], parsed: ParsedRequest) -> None:
    """An uploaded notebook (its file id or /download/<id> URL), or one fetched by http(s) URL."""
    notebook = get_app("notebook")
    location = exe.get("location")
    file_id = notebook_file_id(location)
    if notebook is None:
        parsed.no.append("no platform here runs Jupyter notebooks")
        return
    if file_id is not None:
        parsed.input_ids = [file_id]
    elif isinstance(location, str) and location.split(":", 1)[0].lower() in ("http", "https"):
        parsed.staging.append(notebook_source(location, exe.get("checksum")))
    else:
        parsed.no.append(
            "jupyter-notebook location must be an http(s) URL or name an uploaded notebook "
            f"(its file id or the gateway's /download/<file id> URL), got {location!r}"
        )
        return
    parsed.app, parsed.resources = notebook.name, notebook.resources


def notebook_file_id(location: Any) -> str | None:
    """The uploaded file a notebook ``location`` names: its id, ``file:<id>`` or ``.../download/<id>``."""
    if not isinstance(location, str):
        return None
    tail = location.rstrip("/").rsplit("/", 1)[-1].removeprefix("file:")
    return tail if _FILE_ID.match(tail) else None


def _read_app(exe: dict[str, Any], parsed: ParsedRequest) -> None:
    app_name = exe.get("app")
    app = get_app(app_name) if isinstance(app_name, str) else None
    if app is None:
        parsed.no.append(f"unknown app {app_name!r}")
        return
    parsed.app = app.name
    try:
        validated = app.validate(exe.get("options") or {})
    except OptionError as exc:
        raise BadRequest(str(exc)) from exc
    parsed.options = validated.values
    if validated.ignored:
        parsed.warnings.append(f"unknown options ignored: {', '.join(validated.ignored)}")
    inputs = exe.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise BadRequest("executable.inputs must be a list of file ids")
    parsed.input_ids = inputs
    parsed.resources = app.resources_for(parsed.options)


def _read_compute(raw: Any, parsed: ParsedRequest, limits: tuple[int, float, int]) -> None:
    if raw is None:
        return
    compute = _mapping(raw, "compute")
    uri = compute.get("kind") or compute.get("type") or kinds.SIMPLE_COMPUTE
    if not isinstance(uri, str) or not kinds.is_compute_kind(uri):
        parsed.no.append(f"unknown compute kind {uri!r}")
        return
    meta: dict[str, Any] = compute["meta"] if isinstance(compute.get("meta"), dict) else {}
    parsed.compute_name = compute.get("name") or meta.get("name")
    base = parsed.resources
    min_c, max_c = _minmax(compute.get("cores"), "compute.cores", base.min_cores)
    min_m, max_m = _minmax(compute.get("memory"), "compute.memory", max(1, round(base.min_memory_gib)))
    max_cores, max_mem, _ = limits
    if max_c > max_cores:
        parsed.warnings.append(f"compute.cores.max {max_c} capped to {max_cores}, the largest platform")
        max_c = max(min_c, max_cores)
    if max_m > max_mem:
        parsed.warnings.append(f"compute.memory.max {max_m} GiB capped to {max_mem:g}, the largest platform")
        max_m = max(min_m, int(max_mem))
    parsed.resources = _resources(
        base,
        {
            "min_cores": min_c,
            "max_cores": max_c,
            "min_memory_gib": float(min_m),
            "max_memory_gib": float(max_m),
        },
        "compute",
    )


def _read_schedule(raw: Any, parsed: ParsedRequest, max_duration_s: int) -> None:
    if raw is None:
        return
    requested = _mapping(raw, "schedule").get("requested")
    if requested is None:
        return
    block = _mapping(requested, "schedule.requested")
    if block.get("duration") is not None:
        try:
            duration = _DURATION.validate_python(block["duration"])
        except (ValidationError, OverflowError) as exc:
            raise BadRequest(
                f"schedule.requested.duration {block['duration']!r} is not an ISO-8601 duration"
            ) from exc
        seconds = int(duration.total_seconds())
        if seconds < 1:
            raise BadRequest("schedule.requested.duration must be positive")
        parsed.resources = _resources(
            parsed.resources, {"duration_s": seconds}, "schedule.requested.duration"
        )
    start = block.get("start")
    if isinstance(start, list):  # the EB text allows several windows; we take the first
        start = start[0] if start else None
    if start is not None:
        after, before = _interval(start)
        if before < after:
            raise BadRequest("schedule.requested.start ends before it starts")
        if before < utcnow():
            parsed.no.append(f"the requested start window {start} has already passed")
        parsed.start_after, parsed.start_before = after, before
