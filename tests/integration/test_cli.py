"""The client commands against a live gateway over real HTTP."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cirasa.cli.main import app
from tests.live import LiveGateway

runner = CliRunner()


def test_submit_wait_jobs_offers_and_fetch(
    live_gateway: LiveGateway, fits_image: Path, tmp_path: Path
) -> None:
    server = ["--server", live_gateway.url]
    done = runner.invoke(
        app, ["submit", str(fits_image), "--app", "sleep", "-o", "seconds=0.1", "--wait", *server]
    )
    assert done.exit_code == 0, done.output
    assert '"state": "SUCCESS"' in done.output
    listed = runner.invoke(app, ["jobs", *server])
    assert listed.exit_code == 0 and "SUCCESS" in listed.output
    job_id = done.output.split('"job_id": "')[1].split('"')[0]
    archive = tmp_path / "out.tar.gz"
    fetched = runner.invoke(app, ["fetch", job_id, "--out", str(archive), *server])
    assert fetched.exit_code == 0 and archive.stat().st_size > 0
    offered = runner.invoke(
        app,
        [
            "offers",
            str(fits_image),
            "--app",
            "sleep",
            "-o",
            "seconds=0.1",
            "--cores",
            "1-2",
            "--duration",
            "PT5M",
            "--accept",
            "1",
            *server,
        ],
    )
    assert offered.exit_code == 0, offered.output
    assert "COMPLETED" in offered.output
    bad = runner.invoke(app, ["submit", str(fits_image), "--app", "sep", "-o", "seedthr=-1", *server])
    assert bad.exit_code == 2 and "seedthr" in bad.output
