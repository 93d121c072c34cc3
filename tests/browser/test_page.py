"""The whole job from the web page, as a person does it: upload, options, submit, live state, the
sources on the sky, the table, downloads, comparing, offers, cancel; and the regression where the
page ran a job on another image than the one chosen."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from cirasa.common.settings import AuthSettings, GatewaySettings, Settings
from cirasa.finders.imaging import synthetic_image
from tests.api.test_auth import AUDIENCE, ISSUER, token
from tests.browser.conftest import Shots
from tests.live import LiveGateway

JOB_TIMEOUT_MS = 90_000


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    sky, field_b = tmp_path / "sky.fits", tmp_path / "field_B.fits"
    synthetic_image(sky, size=256, n_sources=12, seed=3)
    synthetic_image(field_b, size=300, n_sources=20, seed=5)
    return {"sky": sky, "field_B": field_b}


def upload(page: Page, path: Path) -> None:
    rows = page.locator("#files tr").count()
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-btn")
    expect(page.locator("#files tr")).to_have_count(rows + 1)
    expect(page.locator("#upload-msg")).to_have_text(f"Uploaded {path.name}")


def chosen_file(page: Page) -> str:
    return page.locator("#files input[type=radio]:checked").get_attribute("value") or ""


def file_id(page: Page, name: str) -> str:
    row = page.locator("#files tr", has=page.get_by_text(name, exact=True))
    return row.get_attribute("data-file-id") or ""


def submit(page: Page, app: str, options: dict[str, str] | None = None) -> str:
    page.select_option("#app", app)
    for name, value in (options or {}).items():
        page.fill(f"#opt-{name}", value)
    page.click("#submit-btn")
    expect(page.locator("#view-job")).to_be_visible()
    return page.locator("#job-id").inner_text()


def wait_state(page: Page, state: str) -> None:
    expect(page.locator("#fact-state")).to_have_text(state, timeout=JOB_TIMEOUT_MS)


def api(gateway: LiveGateway, path: str) -> Any:
    reply = httpx.get(gateway.url + path, timeout=10)
    reply.raise_for_status()
    return reply.json()


def test_a_finder_run_from_upload_to_download(
    live_gateway: LiveGateway, page: Page, shots: Shots, images: dict[str, Path], tmp_path: Path
) -> None:
    page.goto(live_gateway.url + "/")
    upload(page, images["sky"])
    upload(page, images["field_B"])
    sky_id, field_b_id = file_id(page, "sky.fits"), file_id(page, "field_B.fits")
    assert chosen_file(page) == field_b_id, "a new upload is the chosen image"
    page.check(f"#files input[value='{sky_id}']")
    time.sleep(3)  # the old page reset the choice to the first file every 2 s
    assert chosen_file(page) == sky_id
    expect(page.locator("#target-file")).to_contain_text("sky.fits")
    shots("chosen")

    job_id = submit(page, "sep", {"seedthr": "6"})
    expect(page.locator("#fact-state")).to_have_text(re.compile("PENDING|RUNNING|SUCCESS"))
    wait_state(page, "SUCCESS")  # followed live, without reloading
    job = api(live_gateway, f"/cirasa/api/v1/jobs/{job_id}")
    assert job["data_inputs"] == sky_id and job["file_name"] == "sky.fits", "the job ran on the chosen image"
    assert job["job_inputs"]["seedthr"] == 6
    expect(page.locator("#job-facts")).to_contain_text("sky.fits")

    sources = api(live_gateway, f"/caesar/api/v1.0/job/{job_id}/sources")["sources"]
    assert sources
    expect(page.locator("#viewer")).to_have_attribute("data-markers", str(len(sources)))
    expect(page.locator("#catalogue tbody tr")).to_have_count(len(sources))
    shots("sky")

    first_snr = page.locator("#catalogue tbody tr").first.locator("td").nth(7)
    page.click("#catalogue th[data-key=snr]")
    snrs = sorted(s["snr"] for s in sources)
    assert float(first_snr.inner_text()) == pytest.approx(snrs[0], rel=1e-3)
    page.click("#catalogue th[data-key=snr]")
    assert float(first_snr.inner_text()) == pytest.approx(snrs[-1], rel=1e-3)
    threshold = snrs[len(snrs) // 2]
    page.fill("#cat-filter", f"snr>{threshold}")
    kept = sum(1 for s in snrs if s > threshold)
    expect(page.locator("#catalogue tbody tr")).to_have_count(kept)
    expect(page.locator("#cat-shown")).to_have_text(f"{kept} of {len(sources)} sources")
    page.locator("#catalogue tbody tr").first.click()
    expect(page.locator("#viewer .marker.hit")).to_have_count(1)
    shots("table")

    with page.expect_download() as download:
        page.click("#cat-downloads a:text('CSV')")
    saved = tmp_path / "sources.csv"
    download.value.save_as(saved)
    with saved.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(sources) and "source_id" in rows[0]


def test_unavailable_apps_and_the_options_form(live_gateway: LiveGateway, page: Page, shots: Shots) -> None:
    page.goto(live_gateway.url + "/")
    caesar = page.locator("#app option[value=caesar]")
    expect(caesar).to_be_disabled()
    expect(caesar).to_have_attribute("title", re.compile("container image"))
    page.select_option("#app", "sep")
    seedthr = page.locator("#opt-seedthr")
    expect(seedthr).to_have_attribute("type", "number")
    expect(seedthr).to_have_attribute("min", re.compile(r"\d"))
    expect(page.locator("#options-form")).to_contain_text("seedthr")
    shots("apps")


def test_a_bad_option_value_is_named_and_nothing_is_submitted(
    live_gateway: LiveGateway, page: Page, images: dict[str, Path]
) -> None:
    page.goto(live_gateway.url + "/")
    upload(page, images["sky"])
    page.select_option("#app", "sep")
    page.fill("#opt-seedthr", "-5")
    page.click("#submit-btn")
    expect(page.locator("#submit-msg")).to_contain_text("seedthr")
    expect(page.locator("#view-run")).to_be_visible()
    assert api(live_gateway, "/cirasa/api/v1/jobs") == []


def test_cancel_a_running_job(
    live_gateway: LiveGateway, page: Page, shots: Shots, images: dict[str, Path]
) -> None:
    page.goto(live_gateway.url + "/")
    upload(page, images["sky"])
    job_id = submit(page, "sleep", {"seconds": "120"})
    wait_state(page, "RUNNING")
    shots("running")
    page.click("#job-cancel")
    wait_state(page, "CANCELED")
    assert api(live_gateway, f"/caesar/api/v1.0/job/{job_id}/status")["state"] == "CANCELED"
    page.goto(live_gateway.url + "/#jobs")
    row = page.locator(f"#jobs tr[data-job-id='{job_id}']")
    expect(row).to_contain_text(job_id)  # the whole id
    expect(row.locator(".state-CANCELED")).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="delete").click()
    expect(row).to_have_count(0)
    assert api(live_gateway, "/cirasa/api/v1/jobs") == []
    shots("deleted")


def test_compare_two_finders(
    live_gateway: LiveGateway, page: Page, shots: Shots, images: dict[str, Path]
) -> None:
    page.goto(live_gateway.url + "/")
    upload(page, images["sky"])
    first = submit(page, "sep")
    wait_state(page, "SUCCESS")
    page.goto(live_gateway.url + "/#run")
    second = submit(page, "photutils")
    wait_state(page, "SUCCESS")
    page.goto(live_gateway.url + "/#compare")
    page.select_option("#compare-a", first)
    page.select_option("#compare-b", second)
    page.click("#compare-form button")
    expect(page.locator("#compare-msg")).to_contain_text("merged sources")
    expect(page.locator("#compare-scores")).to_contain_text("completeness")
    assert page.locator("#compare-merged tbody tr").count() >= 10
    shots("compared")


def test_offers_accept_and_reject(
    live_gateway: LiveGateway, page: Page, shots: Shots, images: dict[str, Path]
) -> None:
    page.goto(live_gateway.url + "/")
    upload(page, images["sky"])
    page.goto(live_gateway.url + "/#offers")
    page.select_option("#offer-app", "sleep")
    page.fill("#offer-cores", "1")
    page.click("#offer-form button")
    expect(page.locator("#offer-msg")).to_contain_text("offer(s)")
    offers = page.locator("#offers tr")
    assert offers.count() >= 1
    shots("offered")
    offers.first.get_by_role("button", name="accept").click()
    expect(page.locator("#offer-msg")).to_contain_text("Accepted")
    expect(offers.first).to_contain_text(re.compile("ACCEPTED|WAITING|RUNNING|COMPLETED"))
    page.goto(live_gateway.url + "/#jobs")
    expect(page.locator("#jobs tr .state-SUCCESS")).to_have_count(1, timeout=JOB_TIMEOUT_MS)

    page.goto(live_gateway.url + "/#offers")
    page.click("#offer-form button")  # ask again, and turn the first offer down
    expect(page.locator("#offers tr").first.get_by_role("button", name="reject")).to_be_visible()
    page.locator("#offers tr").first.get_by_role("button", name="reject").click()
    expect(page.locator("#offer-msg")).to_have_text("Rejected")
    expect(page.locator("#offers tr").first).to_contain_text("REJECTED")
    expect(page.locator("#offers tr").first.get_by_role("button")).to_have_count(0)
    page.goto(live_gateway.url + "/#jobs")
    expect(page.locator("#jobs tr")).to_have_count(1)  # a rejected offer runs nothing


def test_api_docs_work_offline(live_gateway: LiveGateway, page: Page, shots: Shots) -> None:
    """Everything /docs, /redoc and the page need comes from the gateway (Redoc's footer links a
    "powered by" logo on its maker's site: an image it does without, so it is only refused here)."""
    outside: list[tuple[str, str]] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(live_gateway.url):
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_local)
    page.goto(live_gateway.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    shots("swagger")
    page.goto(live_gateway.url + "/redoc")
    expect(page.get_by_text("CIRASA gateway").first).to_be_visible()
    page.goto(live_gateway.url + "/")
    expect(page.locator("#app option").first).to_be_attached()
    needed = [(kind, url) for kind, url in outside if kind != "image"]
    assert needed == [], f"the pages asked other sites for {needed}"


def test_with_sign_in_the_page_asks_for_a_token_and_shows_only_the_users_work(
    settings: Settings, jwks_url: str, page: Page, shots: Shots, images: dict[str, Path]
) -> None:
    settings.gateway = GatewaySettings(
        auth=AuthSettings(enabled=True, issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)
    )
    gateway = LiveGateway(settings)
    gateway.start()
    try:
        headers = {"Authorization": f"Bearer {token('bob@example.org')}"}
        with images["field_B"].open("rb") as fh:
            files = {"file": ("field_B.fits", fh.read())}
        httpx.post(f"{gateway.url}/caesar/api/v1.0/upload", files=files, headers=headers).raise_for_status()

        page.goto(gateway.url + "/")
        expect(page.locator("#banner")).to_contain_text("access token")
        page.fill("#token", token("alice@example.org"))
        page.click("#token-form button")
        expect(page.locator("#banner")).to_be_hidden()
        expect(page.locator("#no-files")).to_be_visible()  # bob's image is not alice's
        upload(page, images["sky"])
        submit(page, "sep")
        wait_state(page, "SUCCESS")  # the live stream carries the token too
        expect(page.locator("#viewer")).to_have_attribute("data-ready", "1")  # so does the image
        shots("signed-in")
    finally:
        gateway.stop()
