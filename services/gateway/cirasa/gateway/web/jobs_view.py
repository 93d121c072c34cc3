"""What the page and the CLI show of a user's jobs: summaries with the input file's name, a job's
products and the tail of its logs. Read-only views over the gateway's read model and job directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import DESCENDING

from cirasa.backends.stderr_reason import tail_text
from cirasa.common.events import TERMINAL_STATES
from cirasa.gateway.archive import contained_file
from cirasa.gateway.service import Gateway

SUMMARY_KEYS = (
    "job_id", "app", "state", "status", "tag", "submit_date", "start_date", "end_date",
    "elapsed_time", "data_inputs", "platform", "exit_code", "offer_start",
)  # fmt: skip
LOG_STREAMS = ("stdout", "stderr")
TAIL_BYTES = 256 * 1024  # a log's tail is read from at most its last 256 KiB
MAX_LISTED = 500  # the newest jobs the page lists and streams


async def file_names(gateway: Gateway, user: str, file_ids: list[str]) -> dict[str, str]:
    """The original names of ``user``'s files ``file_ids`` (deleted ones too: their jobs still name them)."""
    cursor = gateway.files.raw.find({"user": user, "_id": {"$in": file_ids}}, {"filename_orig": 1})
    return {d["_id"]: d.get("filename_orig", "") async for d in cursor}


async def job_summaries(gateway: Gateway, user: str, limit: int = MAX_LISTED) -> list[dict[str, Any]]:
    """The user's newest ``limit`` jobs not deleted, newest first, each with its input file's name
    (the live stream reads this every second: bounded, and through the user-by-date index)."""
    projection = dict.fromkeys(SUMMARY_KEYS, 1)
    cursor = gateway.jobs.raw.find({"user": user, "deleted": {"$ne": True}}, projection)
    docs = [d async for d in cursor.sort("submit_date", DESCENDING).limit(limit)]
    names = await file_names(gateway, user, sorted({str(d.get("data_inputs")) for d in docs}))
    return [summary(d, names) for d in docs]


def summary(doc: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out = {k: doc.get(k) for k in SUMMARY_KEYS}
    out["file_name"] = names.get(str(doc.get("data_inputs")), "")
    out["final"] = doc.get("state") in TERMINAL_STATES
    return out


def products(directory: Path | None) -> list[dict[str, Any]]:
    """The files a job left at the top of its directory, by name (logs included)."""
    if directory is None:
        return []
    files = (p for p in sorted(directory.iterdir()) if p.is_file() and not p.is_symlink())
    return [{"name": p.name, "size_bytes": p.stat().st_size} for p in files]


def product_path(directory: Path | None, name: str) -> Path | None:
    if directory is None or "/" in name or name.startswith("."):
        return None
    return contained_file(directory, directory / name)


def log_tail(directory: Path | None, stream: str, lines: int) -> str | None:
    """The last ``lines`` lines of the job's ``stream`` log; None when it has none (yet)."""
    path = product_path(directory, f"{stream}.log")
    if path is None:
        return None
    kept = tail_text(path, TAIL_BYTES).splitlines()[-lines:] if lines > 0 else []
    return "\n".join(kept) + ("\n" if kept else "")
