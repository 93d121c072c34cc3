"""Diagnostic app: ``python -m cirasa.finders.runners.sleep --seconds F [--exit-code N] --out-dir DIR``.

Sleeps, writes ``result.json`` ({"slept_s": F}) into the output directory, then exits with the given code.
SIGTERM (and SIGINT) end it at once with 143 (130), without a result, as a killed job would.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

_HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the shell convention: 143 for SIGTERM, 130 for SIGINT


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _exit_code(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be between 0 and 255, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sleep_app", description="Sleep, write result.json, exit.")
    parser.add_argument("--seconds", type=_seconds, default=1.0, help="how long to sleep")
    parser.add_argument("--exit-code", type=_exit_code, default=0, help="exit code to finish with")
    parser.add_argument("--out-dir", type=Path, required=True, help="where result.json goes")
    # The platform passes every app its input; this one has no use for it.
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--image-name", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    for signum in _HANDLED_SIGNALS:
        signal.signal(signum, _exit_on_signal)
    args = parse_args(argv)
    deadline = time.monotonic() + args.seconds
    while (left := deadline - time.monotonic()) > 0:  # sleep may return early; keep the full duration
        time.sleep(left)
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "result.json").write_text(json.dumps({"slept_s": args.seconds}) + "\n")
    except OSError as exc:
        print(f"sleep_app: error: cannot write result.json: {exc}", file=sys.stderr)
        return 1
    code: int = args.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
