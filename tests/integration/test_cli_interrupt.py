"""Ctrl-C while the CLI waits stops the waiting, not the job: a real ``cirasa`` process gets a real
SIGINT, says how to follow or cancel the job, and exits 130; ``cancel`` then stops the job."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from cirasa.cli.main import app
from tests.live import LiveGateway

runner = CliRunner()


class CliProcess:
    """``cirasa ARGS`` in a child process, its stderr read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cirasa.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"cirasa ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no {pattern!r} within {timeout_s:g} s: {self.seen}")

    def interrupt(self) -> tuple[int, list[str]]:
        """SIGINT, as Ctrl-C sends; the exit code and the rest of stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        rest: list[str] = []
        while (line := self.lines.get(timeout=10)) is not None:
            rest.append(line)
        return code, rest


def state_of(gateway: LiveGateway, job_id: str) -> str:
    result = runner.invoke(app, ["status", job_id, "--server", gateway.url])
    assert result.exit_code == 0, result.output
    return re.findall(r"^state +(\S+)$", result.stdout, re.MULTILINE)[0]


def test_ctrl_c_while_waiting_leaves_the_job_running_and_cancel_stops_it(
    live_gateway: LiveGateway, fits_image: Path
) -> None:
    url = live_gateway.url
    waiting = CliProcess(
        "submit", str(fits_image), "--app", "sleep", "-o", "seconds=120", "--wait", "--server", url
    )
    job_id = waiting.wait_for(r"job ([0-9a-f]{32}) accepted").group(1)
    waiting.wait_for(r"RUNNING")
    code, rest = waiting.interrupt()
    assert code == 130
    assert rest == [
        f"stopped waiting; job {job_id} continues on the server — `cirasa status {job_id} --server {url}` "
        f"to follow, `cirasa cancel {job_id} --server {url}` to cancel it"
    ]
    assert state_of(live_gateway, job_id) == "RUNNING"

    cancelled = runner.invoke(app, ["cancel", job_id[:10], "--server", url])
    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {job_id}: " in cancelled.stdout
    assert "cancel" in cancelled.stdout.lower()  # the server's own words
    deadline = time.monotonic() + 30
    while state_of(live_gateway, job_id) != "CANCELED":
        assert time.monotonic() < deadline, "the job was not cancelled"
        time.sleep(0.2)
    again = runner.invoke(app, ["cancel", job_id, "--server", url])
    assert again.exit_code == 0
    assert "already completed with state CANCELED" in again.stdout


def test_ctrl_c_while_following_a_session_leaves_it_going(
    live_gateway: LiveGateway, fits_image: Path
) -> None:
    url = live_gateway.url
    following = CliProcess(
        *("offers", str(fits_image), "--app", "sleep", "-o", "seconds=120", "--accept", "1"),
        *("--server", url),
    )
    session = following.wait_for(r"session ([0-9a-f]+): RUNNING").group(1)
    code, rest = following.interrupt()
    assert code == 130
    assert rest == [
        f"stopped waiting; session {session} continues on the server — "
        f"`cirasa jobs --server {url}` shows its job"
    ]
    listed = runner.invoke(app, ["jobs", "--server", url])
    running = [line for line in listed.stdout.splitlines() if " sleep " in line and "RUNNING" in line]
    assert len(running) == 1
    job_id = running[0].split()[0]
    assert runner.invoke(app, ["cancel", job_id, "--server", url]).exit_code == 0


def test_submit_without_wait_prints_the_servers_reply(live_gateway: LiveGateway, fits_image: Path) -> None:
    result = runner.invoke(
        app, ["submit", str(fits_image), "--app", "sleep", "-o", "seconds=0", "--server", live_gateway.url]
    )
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    assert reply["state"] == "PENDING" and len(reply["job_id"]) == 32
