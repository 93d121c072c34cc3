"""Reading an ExecutionRequest's data, storage and volumes into what the platform stages and mounts.

Data resources (an http(s) URL, an S3 object, an IVOA dataset by ``ivo://`` identifier or DataLink
URL) become ``DataSource`` items the platform fetches into its cache during PREPARING; storage
resources become scratch directories; volumes say where the job sees each, read-only or not. A
structural problem (a list that is not a list, a path that is not a string) is a 400; something the
platform cannot honour (Rucio data, a whole S3 bucket, an unknown kind) is a NO that says what.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cirasa.common.events import DataSource, VolumeMount
from cirasa.gateway.errors import BadRequest

MAX_RESOURCES = 32
_CHECKSUM = re.compile(r"^(sha256|md5):[0-9a-fA-F]+$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
DEFAULT_VOLUME_ROOT = "/volumes"


@dataclass
class DataPlan:
    """What a request's data part asks of the platform, and what of it cannot be done."""

    staging: list[DataSource] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    no: list[str] = field(default_factory=list)


def _items(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, dict):  # a single resource where a list was expected: tolerated
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRequest(f"{where} must be a list of objects")
    if len(value) > MAX_RESOURCES:
        raise BadRequest(f"{where} lists {len(value)} resources; at most {MAX_RESOURCES} are accepted")
    return value


def _name(item: dict[str, Any], where: str, fallback: str) -> str:
    name = item.get("name") or _block(item, "meta").get("name") or fallback
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"{where} name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return name


def _kind(item: dict[str, Any]) -> str:
    uri = item.get("kind") or item.get("type") or ""
    return str(uri).rstrip("/").rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix("-1.0").lower()


def _checksum(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):  # SKAO style {type, value}
        value = f"{str(value.get('type', '')).lower()}:{value.get('value', '')}"
    if not isinstance(value, str) or not _CHECKSUM.match(value):
        raise BadRequest(f"{where}.checksum must be 'sha256:<hex>' or 'md5:<hex>', got {value!r}")
    return value.lower()


def _size(*candidates: Any) -> int | None:
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _block(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    return value if isinstance(value, dict) else {}


def _url_name(url: str, fallback: str) -> str:
    tail = posixpath.basename(urlsplit(url).path)
    return tail if _NAME.match(tail or "") else fallback


def read_data(item: dict[str, Any], index: int, plan: DataPlan) -> DataSource | None:
    """One data resource as a ``DataSource``; None (with a NO reason in ``plan``) when it cannot be."""
    where = f"data[{index}]"
    kind = _kind(item)
    checksum = _checksum(item.get("checksum"), where)
    if kind in ("simple-data-resource", "simple-data"):
        location = item.get("location")
        if not isinstance(location, str) or urlsplit(location).scheme not in ("http", "https"):
            plan.no.append(f"{where}: a simple data resource needs an http(s) location, got {location!r}")
            return None
        name = _name(item, where, _url_name(location, f"data-{index}"))
        return DataSource(
            name=name, scheme="http", location=location, checksum=checksum, size_bytes=_size(item.get("size"))
        )
    if kind in ("s3-data-resource", "s3-data"):
        return _read_s3(item, where, index, checksum, plan)
    if kind in ("ivoa-data-resource", "skao-data-resource"):
        return _read_ivoa(item, where, index, checksum, plan)
    if kind.startswith("rucio"):
        plan.no.append(f"{where}: Rucio data resources are not staged here (http, S3 and IVOA data are)")
        return None
    plan.no.append(f"{where}: unknown data kind {item.get('kind') or item.get('type')!r}")
    return None


def _read_s3(
    item: dict[str, Any], where: str, index: int, checksum: str | None, plan: DataPlan
) -> DataSource | None:
    endpoint, bucket, key = item.get("endpoint"), item.get("bucket"), item.get("object")
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        plan.no.append(f"{where}: an S3 data resource needs an http(s) endpoint, got {endpoint!r}")
        return None
    if not isinstance(bucket, str) or not bucket:
        plan.no.append(f"{where}: an S3 data resource needs a bucket")
        return None
    if not isinstance(key, str) or not key:
        plan.no.append(f"{where}: whole S3 buckets are not staged here; name an object")
        return None
    name = _name(item, where, _url_name(f"/{key}", f"data-{index}"))
    return DataSource(
        name=name,
        scheme="s3",
        location=f"s3://{bucket}/{key}",
        endpoint=endpoint,
        checksum=checksum,
        size_bytes=_size(item.get("size")),
    )


def _read_ivoa(
    item: dict[str, Any], where: str, index: int, checksum: str | None, plan: DataPlan
) -> DataSource | None:
    block, skao = _block(item, "ivoa"), _block(item, "skao")
    datalink, obscore = _block(block, "datalink"), _block(block, "obscore")
    size = _size(skao.get("datasize"), datalink.get("content_length"), item.get("size"))
    checksum = checksum or _checksum(skao.get("checksum"), f"{where}.skao")
    ivoid, link = block.get("ivoid"), datalink.get("access_url")
    access, access_format = obscore.get("access_url"), str(obscore.get("access_format") or "")
    if isinstance(link, str) and link:
        location, scheme = link, "ivoa"
    elif isinstance(access, str) and access:  # ObsCore's access_url: the file, or a DataLink document
        location, scheme = access, "ivoa" if "datalink" in access_format.lower() else "http"
    elif isinstance(ivoid, str) and ivoid.startswith("ivo://"):
        location, scheme = ivoid, "ivoa"
    else:
        plan.no.append(
            f"{where}: an IVOA data resource needs ivoa.ivoid (ivo://...) or a DataLink access_url"
        )
        return None
    if not location.startswith("ivo://") and urlsplit(location).scheme not in ("http", "https"):
        plan.no.append(f"{where}: {location!r} is neither an ivo:// identifier nor an http(s) URL")
        return None
    name = _name(item, where, f"data-{index}")
    return DataSource(
        name=name,
        scheme=scheme,
        location=location,
        checksum=checksum,
        size_bytes=size,
    )


def read_storage(items: list[dict[str, Any]], plan: DataPlan) -> dict[str, tuple[float, list[str]]]:
    """Storage resources by name: (size in GiB, names of the data they hold)."""
    storage: dict[str, tuple[float, list[str]]] = {}
    for index, item in enumerate(items):
        where = f"storage[{index}]"
        if _kind(item) not in ("simple-storage-resource", "simple-storage", "ephemeral-storage"):
            plan.no.append(f"{where}: unknown storage kind {item.get('kind') or item.get('type')!r}")
            continue
        size = item.get("size")
        size = size.get("min", size.get("max")) if isinstance(size, dict) else size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int | float) or size <= 0):
            raise BadRequest(f"{where}.size must be a positive number of GiB")
        data = item.get("data") or []
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise BadRequest(f"{where}.data must be a list of data resource names")
        storage[_name(item, where, f"storage-{index}")] = (float(size or 1), list(data))
    return storage


def _target(item: dict[str, Any], where: str, name: str) -> str:
    path = item.get("path", f"{DEFAULT_VOLUME_ROOT}/{name}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest(f"{where}.path must be an absolute path, got {path!r}")
    if ".." in path.split("/") or posixpath.normpath(path) in ("/", DEFAULT_VOLUME_ROOT):
        raise BadRequest(f"{where}.path {path!r} may not contain '..' or be / or {DEFAULT_VOLUME_ROOT}")
    return posixpath.normpath(path)


def read_volume(
    item: dict[str, Any],
    index: int,
    data: dict[str, DataSource],
    storage: dict[str, tuple[float, list[str]]],
    plan: DataPlan,
) -> VolumeMount | None:
    where = f"volumes[{index}]"
    name = _name(item, where, f"volume-{index}")
    mode = str(item.get("mode") or "READONLY").upper()
    if mode not in ("READONLY", "READWRITE"):
        raise BadRequest(f"{where}.mode must be READONLY or READWRITE, got {item.get('mode')!r}")
    cardinality = str(item.get("cardinality") or "").upper() or None
    if cardinality not in (None, "SINGLE", "CONTAINER"):
        plan.no.append(f"{where}: cardinality {cardinality} is not supported (SINGLE and CONTAINER are)")
        return None
    refs = item.get("resources") if item.get("resource") is None else [item.get("resource")]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise BadRequest(f"{where} must name its resource (resource: <data or storage name>)")
    target = _target(item, where, name)
    unknown = [r for r in refs if r not in data and r not in storage]
    if unknown:
        plan.no.append(f"{where}: no data or storage resource named {', '.join(map(repr, unknown))}")
        return None
    names = [d for r in refs for d in ([r] if r in data else storage[r][1])]
    missing = [d for d in names if d not in data]
    if missing:
        plan.no.append(f"{where}: its storage lists data not in the request: {', '.join(missing)}")
        return None
    scratch = sum(storage[r][0] for r in refs if r in storage) or None
    if cardinality is None:  # one data resource alone is mounted as the file itself
        cardinality = "SINGLE" if len(refs) == 1 and refs[0] in data else "CONTAINER"
    if cardinality == "SINGLE" and (len(names) != 1 or scratch):
        plan.no.append(f"{where}: SINGLE cardinality mounts exactly one data resource")
        return None
    return VolumeMount(
        name=name,
        path=target,
        mode=mode,
        resources=names,
        cardinality=cardinality,
        storage_gib=scratch,
    )


def read_plan(request: dict[str, Any], compute: dict[str, Any] | None) -> DataPlan:
    """The data, storage and volumes of ``request`` (volumes under ``compute``, as in v1.0, or at the
    top level, as in older drafts). Data no volume names is mounted read-only at /volumes/<name>."""
    plan = DataPlan()
    items = _items(request.get("data"), "data")
    storage = read_storage(_items(request.get("storage"), "storage"), plan)
    data: dict[str, DataSource] = {}
    for index, item in enumerate(items):
        source = read_data(item, index, plan)
        if source is None:
            continue
        if source.name in data:
            raise BadRequest(f"two data resources are named {source.name!r}")
        data[source.name] = source
        holder = item.get("storage")
        if isinstance(holder, str) and holder:
            if holder not in storage:
                plan.no.append(f"data[{index}]: no storage resource named {holder!r}")
            elif source.name not in storage[holder][1]:
                storage[holder][1].append(source.name)
    raw_volumes = (
        (compute or {}).get("volumes") if compute and "volumes" in compute else request.get("volumes")
    )
    mounted: set[str] = set()
    for index, item in enumerate(_items(raw_volumes, "volumes")):
        volume = read_volume(item, index, data, storage, plan)
        if volume is None:
            continue
        if any(v.path == volume.path for v in plan.volumes):
            raise BadRequest(f"two volumes are mounted at {volume.path}")
        plan.volumes.append(volume)
        mounted.update(volume.resources)
    for name in data:
        if name not in mounted:
            path = f"{DEFAULT_VOLUME_ROOT}/{name}"
            plan.volumes.append(VolumeMount(name=name, path=path, resources=[name], cardinality="SINGLE"))
    plan.staging = list(data.values())
    return plan


def notebook_source(location: str, checksum: Any) -> DataSource:
    """A notebook given by URL: fetched like data, and run as the job's executable."""
    name = _url_name(location, "notebook.ipynb")
    return DataSource(
        name=name if name.endswith(".ipynb") else f"{name}.ipynb",
        scheme="http",
        location=location,
        checksum=_checksum(checksum, "executable"),
        role="executable",
    )
