"""The README's shell examples, run against a `cirasa dev` server of this test's own, so they cannot rot.

Every ```bash block of README.md runs, line by line (a trailing ``\\`` joins lines), in a scratch directory,
unless the line before its fence is ``<!-- readme-test: skip: why -->`` (the installer, the test suite
itself, RabbitMQ, Docker). A ```yaml block after ``<!-- readme-test: file NAME -->`` is written to NAME
when the examples reach it. The server is ``cirasa dev`` on a free port: ``http://127.0.0.1:8000`` becomes
its address and ``CIRASA_SERVER`` names it to the CLI; the line that starts ``cirasa dev`` is that server.
Placeholders are filled in from the server: ``<uuid>`` is the newest file, ``<job_id>`` the newest job,
``<APP job_id>`` the newest job of APP, ``<offer uuid>`` the last offer an answer showed. Every command
must exit 0 (``curl`` is told to fail on an HTTP error).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTED_SERVER = "http://127.0.0.1:8000"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\b.*-->$")
FILE = re.compile(r"^<!--\s*readme-test:\s*file\s+(\S+)\s*-->$")
JOB = re.compile(r"<(?:(\w+) )?job_id>")
SERVER_LINE = re.compile(r"^\.venv/bin/cirasa dev\b")
OFFER = re.compile(r"/sessions/([0-9a-f]{32})")
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    body: str
    skip: str | None  # why it does not run
    file: str | None  # write the body to this file


def blocks(text: str) -> list[Block]:
    """The README's fenced blocks with the marker comment right before each."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```") and len(lines[i]) > 3:
            end = lines.index("```", i + 1)
            marker = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            file = FILE.match(marker)
            found.append(
                Block(
                    lang=lines[i][3:].strip(),
                    line=i + 1,
                    body="\n".join(lines[i + 1 : end]),
                    skip=marker if SKIP.match(marker) else None,
                    file=file.group(1) if file else None,
                )
            )
            i = end
        i += 1
    return found


def commands(body: str) -> Iterator[str]:
    """The block's commands: one a line, a trailing backslash joining the next."""
    pending = ""
    for raw in body.splitlines():
        line = raw.strip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            yield command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    """``cirasa dev`` on a free port, its data under ``tmp_path``; its address."""
    port = free_port()
    env = {
        **os.environ,
        "CIRASA_DATA_DIR": str(tmp_path / "var/data"),
        "CIRASA_JOBS_DIR": str(tmp_path / "var/jobs"),
    }
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/cirasa"), "dev", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "cirasa dev exited"
        try:
            if httpx.get(f"{url}/caesar/api/v1.0/apps", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"cirasa dev did not answer within {timeout_s:g} s")


class Examples:
    """Runs the README's commands in ``work`` against ``server``, filling in the placeholders."""

    def __init__(self, server: str, work: Path) -> None:
        self.server = server
        self.work = work
        self.outputs: list[str] = []
        self.api = httpx.Client(base_url=f"{server}/caesar/api/v1.0", timeout=30)
        (work / ".venv").symlink_to(ROOT / ".venv")

    def newest_file(self) -> str:
        files = self.api.get("/fileids").json()
        assert files, "a placeholder <uuid>, but no file was uploaded yet"
        return str(max(files, key=lambda f: f["filedate"])["fileid"])

    def newest_job(self, app: str | None) -> str:
        jobs = [j for j in self.api.get("/jobs").json() if app is None or j.get("app") == app]
        assert jobs, f"a placeholder <{app or ''} job_id>, but no such job was submitted yet"
        return str(max(jobs, key=lambda j: j["submit_date"])["job_id"])

    def last_offer(self) -> str:
        for output in reversed(self.outputs):
            if found := OFFER.search(output):
                return found.group(1)
        raise AssertionError("a placeholder <offer uuid>, but no answer showed an offer")

    def fill(self, text: str) -> str:
        text = text.replace(DOCUMENTED_SERVER, self.server)
        if "<uuid>" in text:
            text = text.replace("<uuid>", self.newest_file())
        if "<offer uuid>" in text:
            text = text.replace("<offer uuid>", self.last_offer())
        return JOB.sub(lambda m: self.newest_job(m.group(1)), text)

    def run(self, command: str, where: str) -> None:
        command = self.fill(command)
        if command.startswith("curl "):
            command = "curl -sS --fail-with-body " + command.removeprefix("curl ")
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=self.work,
            env={**os.environ, "CIRASA_SERVER": self.server},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        self.outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, (
            f"{where}: `{command}` exited {done.returncode}:\n{self.outputs[-1][-3000:]}"
        )


def test_the_readme_marks_what_it_does_not_run() -> None:
    found = blocks(README.read_text())
    shell = [b for b in found if b.lang == "bash"]
    assert len(shell) >= 5 and all(b.skip is None or "skip:" in b.skip for b in shell)
    skipped = [b for b in shell if b.skip]
    assert all("cirasa up" in b.body or "install.sh" in b.body for b in skipped), skipped
    assert [b.file for b in found if b.file] == ["request.yaml"]
    assert list(commands("a \\\n  b\n# note\n\nc")) == ["a b", "c"]


def test_every_runnable_readme_example_runs(dev_server: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    examples = Examples(dev_server, work)
    ran = 0
    for block in blocks(README.read_text()):
        if block.file:
            (work / block.file).write_text(examples.fill(block.body) + "\n")
            continue
        if block.lang != "bash" or block.skip:
            continue
        for command in commands(block.body):
            if not SERVER_LINE.match(command):  # that server is this test's own
                examples.run(command, f"README.md line {block.line}")
                ran += 1
    assert ran >= 15
    assert "completeness" in "".join(examples.outputs)  # the compare example compared
    assert (work / "merged.json").is_file()
