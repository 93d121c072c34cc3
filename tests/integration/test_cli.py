"""The client commands against a live gateway over real HTTP: a source finder's job from submission
to its catalogue, logs and archive, with whole ids shown and id prefixes taken everywhere."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cirasa.cli import client
from cirasa.cli.main import app
from tests.live import LiveGateway

runner = CliRunner()
# The gateway runs in this process: its log lines land in the runner's stdout too.
SERVICE_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def cli(gateway: LiveGateway, *args: str) -> Result:
    return runner.invoke(app, [*args, "--server", gateway.url])


def out(result: Result) -> str:
    """What the command printed on stdout, without the in-process services' log lines."""
    return "\n".join(line for line in result.stdout.splitlines() if not SERVICE_LOG.match(line))


def table_rows(output: str, job_id: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(job_id)]


def test_a_finders_job_from_submission_to_catalogue(
    live_gateway: LiveGateway, fits_image: Path, tmp_path: Path
) -> None:
    done = cli(live_gateway, "submit", str(fits_image), "--app", "sep", "-o", "no-preview=true", "--wait")
    assert done.exit_code == 0, done.output
    final = json.loads(out(done))
    assert final["state"] == "SUCCESS"
    job_id = final["job_id"]
    assert "warning" not in done.stderr
    listed = cli(live_gateway, "jobs")
    assert listed.exit_code == 0
    (row,) = table_rows(out(listed), job_id)  # the whole id, not cut to fit the terminal
    assert "sep" in row and "SUCCESS" in row

    prefix = job_id[:8]
    status = cli(live_gateway, "status", prefix)
    assert status.exit_code == 0, status.output
    fields = dict(line.split(None, 1) for line in out(status).splitlines() if " " in line)
    assert fields["job"] == job_id and fields["state"] == "SUCCESS" and fields["platform"] == "local"
    assert fields["status"] == "Process terminated with success"
    assert fields["elapsed"].endswith(" s")

    sources = cli(live_gateway, "sources", prefix + "…")  # as copied from a table that cut it
    assert sources.exit_code == 0, sources.output
    header, *rows = out(sources).splitlines()
    assert header.split()[:5] == ["source_id", "ra_deg", "dec_deg", "x_pix", "y_pix"]
    assert "peak_mJy" in header and "snr" in header
    assert len(rows) >= 5
    assert sources.stderr.strip() == f"{len(rows)} of {len(rows)} sources shown"
    few = cli(live_gateway, "sources", prefix, "--limit", "3")
    assert len(out(few).splitlines()) == 1 + 3
    assert few.stderr.strip() == f"3 of {len(rows)} sources shown (--limit 0 shows all)"

    logs = cli(live_gateway, "logs", prefix, "--stream", "stdout")
    assert logs.exit_code == 0, logs.output
    assert json.loads(out(logs).strip().splitlines()[-1])["n_sources"] == len(rows)
    last = cli(live_gateway, "logs", prefix, "--stream", "stdout", "--tail", "1")
    assert len(out(last).splitlines()) == 1

    archive = tmp_path / "out.tar.gz"
    fetched = cli(live_gateway, "fetch", prefix, "--out", str(archive))
    assert fetched.exit_code == 0, fetched.output
    with tarfile.open(archive) as tar:
        assert any(name.endswith(".json") and "catalog" in name for name in tar.getnames())


def test_offers_accepted_and_followed(live_gateway: LiveGateway, fits_image: Path) -> None:
    offered = cli(
        live_gateway,
        *("offers", str(fits_image), "--app", "sleep", "-o", "seconds=0.1"),
        *("--cores", "1-2", "--duration", "5m", "--accept", "1"),
    )
    assert offered.exit_code == 0, offered.output
    assert out(offered).startswith("offer set ")
    assert "PT5M" in out(offered)  # the shorthand went to the server as ISO-8601
    assert "COMPLETED" in offered.stderr


def test_an_uploaded_file_is_reused_by_a_prefix_of_its_id(
    live_gateway: LiveGateway, fits_image: Path
) -> None:
    first = cli(live_gateway, "submit", str(fits_image), "--app", "sleep", "-o", "seconds=0")
    assert first.exit_code == 0, first.output
    file_id = json.loads(out(first))["data_inputs"]
    assert f"cirasa status {json.loads(out(first))['job_id']}" in first.stderr
    files = cli(live_gateway, "files")
    assert [line.split()[0] for line in out(files).splitlines()[1:]] == [file_id]
    again = cli(live_gateway, "submit", "--file", file_id[:6], "--app", "sleep", "-o", "seconds=0", "--wait")
    assert again.exit_code == 0, again.output
    assert json.loads(out(again))["state"] == "SUCCESS"
    assert f"input: uploaded file {file_id}" in again.stderr


def test_status_follows_a_job_to_its_end(live_gateway: LiveGateway, fits_image: Path) -> None:
    submitted = cli(live_gateway, "submit", str(fits_image), "--app", "sleep", "-o", "seconds=0.5")
    job_id = json.loads(out(submitted))["job_id"]
    followed = cli(live_gateway, "status", job_id[:5], "--follow")
    assert followed.exit_code == 0, followed.output
    assert "SUCCESS" in followed.stderr  # the progress lines
    assert re.search(r"^state +SUCCESS$", out(followed), re.MULTILINE)
    failing = cli(live_gateway, "submit", str(fits_image), "--app", "sleep", "-o", "exit-code=3", "--wait")
    assert failing.exit_code == 1
    assert json.loads(out(failing))["state"] == "FAILURE"


def test_apps_say_which_can_run_here_and_why_not(live_gateway: LiveGateway) -> None:
    listed = cli(live_gateway, "apps")
    assert listed.exit_code == 0, listed.output
    runnable = {line.split()[0]: line.split()[1] for line in out(listed).split("\n\n")[0].splitlines()[1:]}
    assert runnable["sep"] == "yes" and runnable["sleep"] == "yes"
    assert runnable["caesar"] == "no"  # a container app; the test platform is a local one
    why = out(listed).split("not runnable here:\n")[1]
    assert any(line.strip().startswith("caesar: ") and "container" in line for line in why.splitlines())
    options = cli(live_gateway, "apps", "sep")
    assert options.exit_code == 0
    seedthr = next(line for line in out(options).splitlines() if line.startswith("seedthr "))
    assert seedthr.split()[1:4] == ["float", "5", "[0.5,"]


def test_apps_from_a_server_without_the_cirasa_api(
    live_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older gateway has only caesar-rest's list of names: every app is listed, runnable unknown."""
    monkeypatch.setattr(client, "CIRASA", "/cirasa/api/v0")  # a path this server does not serve
    listed = cli(live_gateway, "apps")
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in out(listed).splitlines()[1:]]
    assert {row[0] for row in rows} >= {"sep", "caesar", "sleep"}
    assert {row[1] for row in rows} == {"?"}
    assert "does not say which apps can run here" in listed.stderr


def test_tiled_finds_a_map_as_tiles_and_writes_the_merged_catalogue(
    live_gateway: LiveGateway, tmp_path: Path
) -> None:
    from cirasa.finders.simulation import simulate_sky

    image = tmp_path / "wide.fits"
    simulate_sky(image, size=600, density_per_deg2=2500, seed=2)
    merged = tmp_path / "merged.json"
    done = cli(
        live_gateway, "tiled", str(image), "-o", "no-preview=true", "--per-side", "2", "--out", str(merged)
    )
    assert done.exit_code == 0, done.output
    request = json.loads(out(done).splitlines()[0])
    assert request["total"] == 4 and request["per_side"] == 2
    sources = json.loads(merged.read_text())["sources"]
    assert len(sources) > 100
    assert f"merged catalogue: {len(sources)} sources from 4 tiles" in done.stderr

    bad = cli(live_gateway, "tiled", str(image), "--per-side", "9", "--overlap", "64")
    assert bad.exit_code != 0 and "cannot tile wide.fits" in bad.stderr
