"""Every way a client command fails ends as one line on stderr and a non-zero exit, never a traceback:
the server down, the server's own words for an HTTP error (whichever face), bad option values named,
unknown apps listed, ignored options warned of, unknown and ambiguous id prefixes."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from cirasa.cli.client import CaesarClient
from cirasa.cli.errors import CliError, server_message
from cirasa.cli.main import app
from tests.live import LiveGateway

runner = CliRunner()
UNKNOWN = "0123456789abcdef0123456789abcdef"


def run(server: str, *args: str) -> Result:
    return runner.invoke(app, [*args, "--server", server])


def error_line(result: Result) -> str:
    """The command's only line on stderr, once sure it failed cleanly."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def dead_server() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "IMAGE"),
        ("submit", "IMAGE", "--wait"),
        ("submit", "--file", "65a61cbe"),
        ("offers", "IMAGE"),
        ("jobs",),
        ("files",),
        ("fetch", "65a61cbe397e"),
        ("status", "65a61cbe397e"),
        ("status", UNKNOWN),
        ("cancel", "65a61cbe397e"),
        ("logs", UNKNOWN),
        ("sources", "65a61cbe397e"),
        ("apps",),
        ("apps", "sep"),
    ],
)
def test_a_server_that_is_not_running_is_one_line(
    dead_server: str, fits_image: Path, args: tuple[str, ...]
) -> None:
    result = run(dead_server, *(str(fits_image) if a == "IMAGE" else a for a in args))
    assert error_line(result) == (
        f"error: cannot reach the CIRASA server at {dead_server}: connection refused — "
        "start it with `cirasa dev` or pass --server"
    )
    assert result.exit_code == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("offers", "IMAGE", "--cores", "two"), "Invalid value for '--cores': 'two' is not a valid integer"),
        (("offers", "IMAGE", "--cores", "3-1"), "Invalid value for '--cores': '3-1': MAX is below MIN"),
        (
            ("offers", "IMAGE", "--duration", "30x"),
            "Invalid value for '--duration': '30x' is not an ISO-8601",
        ),
        (("offers", "IMAGE", "--accept", "0"), "Invalid value for '--accept'"),
        (
            ("submit", "IMAGE", "-o", "seedthr"),
            "Invalid value for '--option' / '-o': 'seedthr' is not key=value",
        ),
        (("submit",), "error: give either IMAGE (a FITS file to upload) or --file FILE_ID"),
        (("submit", "IMAGE", "--file", "ab"), "error: give either IMAGE"),
        (("submit", "no-such.fits"), "Invalid value for 'IMAGE': file 'no-such.fits' does not exist"),
        (("logs", "ab", "--tail", "two"), "Invalid value for '--tail'"),
        (("logs", "ab", "--stream", "stdlog"), "Invalid value for '--stream'"),
        (("sources", "ab", "--limit", "-1"), "Invalid value for '--limit'"),
        (("status",), "Missing argument 'JOB'"),
        (("frobnicate",), "No such command 'frobnicate'"),
    ],
)
def test_a_bad_value_is_named_before_any_request(
    dead_server: str, fits_image: Path, args: tuple[str, ...], message: str
) -> None:
    """Against a dead server: the value is checked first, so the error is about it, not the server."""
    result = run(dead_server, *(str(fits_image) if a == "IMAGE" else a for a in args))
    line = error_line(result)
    assert line.startswith("error: ") and message in line
    assert result.exit_code == 2


def test_a_server_url_without_its_scheme_is_named() -> None:
    line = error_line(runner.invoke(app, ["jobs", "--server", "localhost:8000"]))
    assert "Invalid value for '--server'" in line and "'localhost:8000' is not a URL" in line


def test_http_errors_carry_the_servers_own_message(live_gateway: LiveGateway, fits_image: Path) -> None:
    url = live_gateway.url
    # caesar-rest's form ({"status": message})
    assert (
        error_line(run(url, "status", UNKNOWN))
        == f"error: HTTP 404: Job {UNKNOWN} not found for user anonymous!"
    )
    assert error_line(run(url, "cancel", UNKNOWN)).endswith(f"Job {UNKNOWN} not found for user anonymous!")
    refused = run(url, "submit", str(fits_image), "--app", "sep", "-o", "seedthr=-1")
    assert error_line(refused) == "error: HTTP 400: Option seedthr value -1 is out of bounds [0.5, 10000.0]"
    assert refused.exit_code == 2
    # /cirasa/api/v1's form (the same), for logs
    assert (
        error_line(run(url, "logs", UNKNOWN))
        == f"error: HTTP 404: Job {UNKNOWN} not found for user anonymous!"
    )
    # the ExecutionBroker's form ({"status": 400, "message": ...}): the message, not "HTTP 400: 400"
    broker = error_line(run(url, "offers", str(fits_image), "--app", "sep", "-o", "seedthr=-1"))
    assert broker == "error: HTTP 400: Option seedthr value -1 is out of bounds [0.5, 10000.0]"


def test_each_faces_real_error_reply_is_read(live_gateway: LiveGateway, fits_image: Path) -> None:
    with CaesarClient(live_gateway.url) as client:
        file_id = client.upload(fits_image)["uuid"]
    request = {
        "executable": {"kind": "urn:cirasa:eb:executable:cirasa-app", "app": "sep", "inputs": [file_id]},
        "schedule": {"requested": {"duration": "30m"}},
    }
    broker = httpx.post(f"{live_gateway.url}/offersets", json=request)
    assert broker.status_code == 400
    assert "'30m' is not an ISO-8601 duration" in server_message(broker)
    uws = httpx.get(f"{live_gateway.url}/uws/jobs/{UNKNOWN}")
    assert uws.status_code == 404 and uws.headers["content-type"].startswith("text/plain")
    assert server_message(uws) == uws.text.strip() and UNKNOWN in server_message(uws)


def test_an_output_not_ready_says_so(live_gateway: LiveGateway, fits_image: Path) -> None:
    submitted = run(live_gateway.url, "submit", str(fits_image), "--app", "sleep", "-o", "seconds=30")
    job_id = json.loads(submitted.stdout.strip().splitlines()[-1])["job_id"]
    for command in ("fetch", "sources"):
        line = error_line(run(live_gateway.url, command, job_id[:7]))
        assert f"Job {job_id} not yet completed" in line
    run(live_gateway.url, "cancel", job_id)


@pytest.mark.parametrize("command", [("submit", "IMAGE"), ("offers", "IMAGE"), ("apps",)])
def test_an_unknown_app_lists_the_known_ones_and_uploads_nothing(
    live_gateway: LiveGateway, fits_image: Path, command: tuple[str, ...]
) -> None:
    args = [str(fits_image) if a == "IMAGE" else a for a in command]
    line = error_line(
        run(live_gateway.url, *args, *(["sepp"] if command == ("apps",) else ["--app", "sepp"]))
    )
    assert line.startswith("error: app 'sepp' is not known (did you mean sep?) — known apps: sep, ")
    assert "sleep" in line and "caesar" in line
    assert run(live_gateway.url, "files").stderr.strip() == "no files yet: `cirasa submit IMAGE` uploads one"


def test_ignored_options_are_a_warning(live_gateway: LiveGateway, fits_image: Path) -> None:
    result = run(
        live_gateway.url,
        "submit",
        str(fits_image),
        "--app",
        "sleep",
        "-o",
        "secondz=0.1",
        "-o",
        "seconds=0",
        "--wait",
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: option(s) ignored by the server: secondz (did you mean seconds?) — "
        "known options: see `cirasa apps sleep`"
    ]


def sharing_first_character(make: Callable[[], str]) -> tuple[str, str, str]:
    """Ids made until two start alike (16 hex digits: at most 17 of them); (character, id, id)."""
    seen: dict[str, str] = {}
    while True:
        new = make()
        if new[0] in seen:
            return new[0], seen[new[0]], new
        seen[new[0]] = new


def test_ambiguous_and_unknown_prefixes_are_one_line(live_gateway: LiveGateway, fits_image: Path) -> None:
    url = live_gateway.url
    with CaesarClient(url) as client:
        first, file_a, file_b = sharing_first_character(lambda: client.upload(fits_image)["uuid"])
        job_first, job_a, job_b = sharing_first_character(
            lambda: client.submit("sleep", file_a, {"seconds": 0})["job_id"]
        )
    for command in (("status",), ("cancel",), ("fetch",), ("logs",), ("sources",)):
        line = error_line(run(url, *command, job_first))
        assert line.startswith(f"error: job id '{job_first}' is ambiguous: ")
        assert job_a in line and job_b in line and line.endswith("type more of it")
    file_line = error_line(run(url, "submit", "--file", first, "--app", "sleep"))
    assert f"file id '{first}' is ambiguous" in file_line and file_a in file_line and file_b in file_line
    absent = job_a[:20] + ("1" if job_a[20] == "0" else "0")  # no other id shares 20 digits
    assert error_line(run(url, "status", absent)).startswith(f"error: no job id starts with '{absent}'")
    unique = run(url, "status", job_a[:12])
    assert unique.exit_code == 0 and job_a in unique.stdout


def test_a_download_that_cannot_be_written_leaves_nothing(
    live_gateway: LiveGateway, fits_image: Path, tmp_path: Path
) -> None:
    done = run(live_gateway.url, "submit", str(fits_image), "--app", "sleep", "-o", "seconds=0", "--wait")
    job_id = json.loads(done.stdout.strip().splitlines()[-1])["job_id"]
    target = tmp_path / "no-such-dir" / "out.tar.gz"
    line = error_line(run(live_gateway.url, "fetch", job_id, "--out", str(target)))
    assert line.startswith(f"error: cannot write {target}: No such file or directory")
    assert not target.exists()


def test_waiting_too_long_says_the_job_goes_on(live_gateway: LiveGateway, fits_image: Path) -> None:
    with CaesarClient(live_gateway.url) as client:
        file_id = client.upload(fits_image)["uuid"]
        job_id = client.submit("sleep", file_id, {"seconds": 30})["job_id"]
        with pytest.raises(CliError) as caught:
            client.wait(job_id, lambda status: None, timeout_s=0)
        client.cancel(job_id)
    assert caught.value.message.startswith(f"job {job_id} still ")
    assert caught.value.message.endswith("after 0 s; it continues on the server")
    assert caught.value.exit_code == 1
