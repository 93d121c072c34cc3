"""Streaming multipart upload straight to disk, with a size limit enforced while the bytes arrive.

The body is never held in memory: python-multipart writes the ``file`` part to a temporary file in
the destination's directory (so the final move is a rename), and the request is cut off with 413
as soon as it exceeds the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart import FormParser
from python_multipart.multipart import Field, File, parse_options_header

from cirasa.gateway.errors import BadRequest, GatewayError, PayloadTooLarge

ALLOWED_FORMATS = ("png", "jpg", "jpeg", "gif", "fits", "ipynb")
_FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the tag field


@dataclass(frozen=True)
class ReceivedFile:
    tmp_path: Path  # inside a directory of its own, removed by ``discard``
    filename: str
    size_bytes: int
    tag: str

    def discard(self) -> None:
        shutil.rmtree(self.tmp_path.parent, ignore_errors=True)


def content_matches(path: Path, fmt: str) -> bool:
    """A look at the first bytes: is this really the format its extension claims?"""
    with path.open("rb") as fh:
        head = fh.read(80)
    if fmt == "fits":
        return head.startswith(b"SIMPLE  =") and len(head) == 80 and head[29:30] == b"T"
    if fmt == "png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if fmt in ("jpg", "jpeg"):
        return head.startswith(b"\xff\xd8\xff")
    if fmt == "gif":
        return head[:6] in (b"GIF87a", b"GIF89a")
    if fmt == "ipynb":
        return _is_notebook(path)
    return False


def _is_notebook(path: Path) -> bool:
    """A Jupyter notebook is JSON with cells and an nbformat version (read at most 64 MiB of it)."""
    if path.stat().st_size > 64 * 1024 * 1024:
        return False
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return False
    return (
        isinstance(doc, dict) and isinstance(doc.get("cells"), list) and isinstance(doc.get("nbformat"), int)
    )


async def receive_upload(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    tmp_dir: Path,
    max_bytes: int,
) -> ReceivedFile:
    """Parse a multipart body with a ``file`` part (and an optional ``tag`` field) into ``tmp_dir``."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest("Missing file field in request! (expected multipart/form-data with a 'file' part)")
    limit = max_bytes + _FORM_OVERHEAD
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(max_bytes)
    request_dir = await asyncio.to_thread(_request_dir, tmp_dir)
    try:
        return await _parse(params[b"boundary"], body, request_dir, max_bytes, limit)
    except BaseException:
        shutil.rmtree(request_dir, ignore_errors=True)
        raise


async def _parse(
    boundary: bytes, body: AsyncIterator[bytes], request_dir: Path, max_bytes: int, limit: int
) -> ReceivedFile:
    files: list[File] = []
    fields: dict[str, str] = {}

    def on_field(field: Field) -> None:
        if field.field_name and field.value is not None and len(field.value) <= 1024:
            fields[field.field_name.decode(errors="replace")] = field.value.decode(errors="replace")

    def on_file(file: File) -> None:
        files.append(file)

    parser = FormParser(
        "multipart/form-data",
        on_field,
        on_file,
        boundary=boundary,
        config={
            "UPLOAD_DIR": str(request_dir),
            "UPLOAD_DELETE_TMP": False,
            "MAX_MEMORY_FILE_SIZE": 0,
            "UPLOAD_KEEP_FILENAME": False,
            "MAX_BODY_SIZE": limit,
        },
    )
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except GatewayError:
        _close(files)
        raise
    except Exception as exc:
        _close(files)
        raise BadRequest(f"Malformed multipart body: {exc}") from exc
    wanted = [f for f in files if f.field_name == b"file"]
    _close([f for f in files if f not in wanted[:1]])
    if not wanted:
        raise BadRequest("Missing file field in request!")
    file = wanted[0]
    name = (file.file_name or b"").decode(errors="replace")
    path = _flushed_path(file)
    if not name or path is None:
        raise BadRequest("No file retrieved from request!")
    if file.size > max_bytes:
        raise _too_large(max_bytes)
    return ReceivedFile(path, name, file.size, fields.get("tag", ""))


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"File too large: the limit is {max_bytes // (1024 * 1024)} MiB")


def _request_dir(tmp_dir: Path) -> Path:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_dir))


def _flushed_path(file: File) -> Path | None:
    if file.in_memory:
        file.flush_to_disk()
    file.file_object.flush()
    name = file.actual_file_name
    file.close()  # keeps the temporary file: UPLOAD_DELETE_TMP is off
    return Path(os.fsdecode(name)) if name else None


def _close(files: list[File]) -> None:
    for file in files:
        with contextlib.suppress(Exception):
            file.close()
