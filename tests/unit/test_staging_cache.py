"""The staging cache against a real HTTP server on 127.0.0.1 (``tests.file_server.Origin``): one
download however many ask at once (in this process or another), nothing kept of a failed transfer,
the platform's limits and policy, LRU eviction, links into job directories, metrics and progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cirasa.backends.staging import (
    ChecksumMismatch,
    ContentCache,
    FetchFailed,
    StagingError,
    StagingPolicy,
    StagingRefused,
    TooLarge,
    link_into,
)
from cirasa.common.events import DataSource
from tests.file_server import Origin


@pytest.fixture
def platform() -> str:
    """A platform name of the test's own, so that metrics start at zero."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cache(tmp_path: Path, platform: str) -> ContentCache:
    return ContentCache(root=tmp_path / "cache", max_bytes=64 * 1024 * 1024, platform=platform)


POLICY = StagingPolicy(allowed_hosts=["127.0.0.1"], timeout_s=10, connect_timeout_s=2)


def http(url: str, name: str = "sky", checksum: str | None = None) -> DataSource:
    return DataSource(name=name, scheme="http", location=url, checksum=checksum)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def assert_nothing_kept(cache: ContentCache) -> None:
    assert files_under(cache.root / "blobs") == []
    assert files_under(cache.root / "tmp") == []
    assert files_under(cache.root / "keys") == []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- hits and misses -------------------------------------------------------------------------------


async def test_a_miss_then_a_hit_without_any_request(
    origin: Origin, cache: ContentCache, platform: str
) -> None:
    data = os.urandom(5000)
    url = origin.serve("/sky.fits", data)

    first = await cache.stage(http(url), POLICY)
    second = await cache.stage(http(url), POLICY)

    assert origin.gets["/sky.fits"] == 1
    assert (first.hit, second.hit) == (False, True)
    assert first.digest == second.digest == sha256(data)
    assert first.path == second.path == cache.root / "blobs" / "sha256" / first.digest[:2] / first.digest
    assert first.path.read_bytes() == data
    assert first.path.stat().st_mode & 0o777 == 0o444
    assert (first.size_bytes, first.host, second.host) == (5000, "127.0.0.1", "cache")
    assert (cache.root / "keys" / first.key).read_text() == first.digest
    assert metric("cirasa_staging_cache_misses_total", platform=platform) == 1
    assert metric("cirasa_staging_cache_hits_total", platform=platform) == 1
    assert metric("cirasa_staging_bytes_total", platform=platform, origin="network") == 5000
    assert metric("cirasa_staging_bytes_total", platform=platform, origin="cache") == 5000
    assert metric("cirasa_staging_cache_bytes", platform=platform) == 5000


async def test_ten_jobs_staging_the_same_url_at_once_make_one_request(
    origin: Origin, cache: ContentCache, platform: str
) -> None:
    url = origin.serve("/shared.fits", os.urandom(20000), delay_s=0.3)

    items = await asyncio.gather(*(cache.stage(http(url, name=f"job{i}"), POLICY) for i in range(10)))

    assert origin.gets["/shared.fits"] == 1
    assert len({item.digest for item in items}) == 1
    assert sorted(item.hit for item in items) == [False] + [True] * 9
    assert metric("cirasa_staging_cache_hits_total", platform=platform) == 9


async def test_waiters_in_one_process_hold_no_thread(origin: Origin, cache: ContentCache) -> None:
    """Jobs of this process wait on an asyncio lock, not in a worker thread blocked on the file lock:
    with two worker threads, ten waiters blocked in flock would starve the download itself."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
    url = origin.serve("/popular.fits", os.urandom(20000), delay_s=0.2)

    stages = asyncio.gather(*(cache.stage(http(url, name=f"job{i}"), POLICY) for i in range(10)))
    items = await asyncio.wait_for(stages, 5)

    assert origin.gets["/popular.fits"] == 1 and len({item.digest for item in items}) == 1


async def test_another_process_on_the_same_cache_waits_for_the_download_and_hits(
    origin: Origin, tmp_path: Path, platform: str
) -> None:
    """Two ContentCache objects share nothing in memory: only the file lock keeps them to one GET."""
    url = origin.serve("/big.fits", os.urandom(20000), delay_s=0.3)
    one = ContentCache(tmp_path / "cache", 10**8, platform)
    two = ContentCache(tmp_path / "cache", 10**8, platform)

    a, b = await asyncio.gather(one.stage(http(url), POLICY), two.stage(http(url), POLICY))

    assert origin.gets["/big.fits"] == 1
    assert sorted([a.hit, b.hit]) == [False, True]
    assert a.path == b.path and a.digest == b.digest


async def test_a_sha256_checksum_whose_blob_is_there_is_a_hit_without_the_network(
    origin: Origin, cache: ContentCache
) -> None:
    data = b"the same bytes, elsewhere"
    await cache.stage(http(origin.serve("/a", data)), POLICY)

    other = await cache.stage(http(origin.url("/b"), checksum=f"sha256:{sha256(data).upper()}"), POLICY)

    assert other.hit and other.digest == sha256(data)
    assert origin.gets["/b"] == 0


# --- failures keep nothing -------------------------------------------------------------------------


async def test_a_transfer_that_breaks_off_keeps_nothing(origin: Origin, cache: ContentCache) -> None:
    url = origin.serve("/cut.fits", os.urandom(50000), die_after=20000)

    with pytest.raises(FetchFailed, match=r"data 'sky': .*/cut.fits.*broke off"):
        await cache.stage(http(url), POLICY)

    assert_nothing_kept(cache)


async def test_a_cancelled_staging_keeps_nothing_and_frees_the_key(
    origin: Origin, cache: ContentCache
) -> None:
    url = origin.serve("/slow.fits", os.urandom(50000), stall_s=5)
    task = asyncio.create_task(cache.stage(http(url), POLICY))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_kept(cache)

    origin.serve("/slow.fits", b"now quick")
    assert (await asyncio.wait_for(cache.stage(http(url), POLICY), 5)).path.read_bytes() == b"now quick"


async def test_a_checksum_mismatch_keeps_nothing(origin: Origin, cache: ContentCache, platform: str) -> None:
    url = origin.serve("/x.fits", b"what the server has")

    with pytest.raises(ChecksumMismatch, match=r"data 'sky'.*sha256"):
        await cache.stage(http(url, checksum="sha256:" + sha256(b"what the user expected")), POLICY)

    assert_nothing_kept(cache)
    assert metric("cirasa_staging_failures_total", platform=platform, reason="ChecksumMismatch") == 1


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
async def test_md5_and_sha256_checksums_are_verified(
    origin: Origin, cache: ContentCache, algorithm: str
) -> None:
    data = os.urandom(3000)
    url = origin.serve("/ok.fits", data)
    good = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    bad = f"{algorithm}:{hashlib.new(algorithm, b'other').hexdigest()}"

    with pytest.raises(ChecksumMismatch):
        await cache.stage(http(url, checksum=bad), POLICY)
    item = await cache.stage(http(url, checksum=good), POLICY)

    assert item.digest == sha256(data) and not item.hit


async def test_a_malformed_checksum_is_refused_before_any_request(
    origin: Origin, cache: ContentCache
) -> None:
    url = origin.serve("/x", b"x")
    with pytest.raises(StagingRefused, match="sha256 or md5"):
        await cache.stage(http(url, checksum="crc32:1234"), POLICY)
    assert origin.gets["/x"] == 0


async def test_an_error_answer_names_the_url_and_status(origin: Origin, cache: ContentCache) -> None:
    url = origin.url("/missing.fits")
    with pytest.raises(FetchFailed) as caught:
        await cache.stage(http(url), POLICY)
    assert str(caught.value) == f"data 'sky': {url} answered 404 Not Found"


# --- limits ----------------------------------------------------------------------------------------


async def test_an_announced_size_over_the_limit_is_refused_before_reading(
    origin: Origin, cache: ContentCache
) -> None:
    """The server announces 10 GiB and then sends nothing: only a refusal on the header is quick."""
    url = origin.serve("/huge.fits", b"x" * 100, content_length=10 * 1024**3, stall_s=5)
    policy = POLICY.model_copy(update={"max_resource_bytes": 1024 * 1024, "timeout_s": 3})

    started = time.monotonic()
    with pytest.raises(TooLarge, match="10 GiB, more than the 1 MiB"):
        await cache.stage(http(url), policy)

    assert time.monotonic() - started < 2
    assert_nothing_kept(cache)


async def test_a_chunked_body_is_cut_as_soon_as_it_passes_the_limit(
    origin: Origin, cache: ContentCache
) -> None:
    """200 KiB, then a pause: the limit of 100 KiB must stop it before the pause times it out."""
    url = origin.serve("/stream", os.urandom(400 * 1024), chunked=True, pause_after=200 * 1024, pause_s=5)
    policy = POLICY.model_copy(update={"max_resource_bytes": 100 * 1024, "timeout_s": 3})

    started = time.monotonic()
    with pytest.raises(TooLarge, match="sent more than the 100 KiB"):
        await cache.stage(http(url), policy)

    assert time.monotonic() - started < 2
    assert_nothing_kept(cache)


async def test_a_resource_larger_than_the_whole_cache_is_refused(origin: Origin, tmp_path: Path) -> None:
    small = ContentCache(tmp_path / "small", max_bytes=1000, platform="test-small")
    url = origin.serve("/x", os.urandom(1500))
    with pytest.raises(TooLarge):
        await small.stage(http(url), POLICY)
    assert_nothing_kept(small)


async def test_a_transfer_over_the_time_limit_fails_quickly(origin: Origin, cache: ContentCache) -> None:
    url = origin.serve("/sleepy", b"late", delay_s=10)
    policy = POLICY.model_copy(update={"timeout_s": 0.5})

    started = time.monotonic()
    with pytest.raises(FetchFailed, match=r"not fetched within 0.5 s"):
        await cache.stage(http(url), policy)

    assert time.monotonic() - started < 2
    assert_nothing_kept(cache)


# --- policy ----------------------------------------------------------------------------------------


async def test_the_policy_refuses_a_scheme_and_a_host_before_any_request(
    origin: Origin, cache: ContentCache, platform: str
) -> None:
    url = origin.serve("/x", b"x")

    with pytest.raises(
        StagingRefused, match=r"data 'sky': .* scheme 'http' is not allowed here \(allowed: https\)"
    ):
        await cache.stage(http(url), StagingPolicy(allowed_schemes=["https"]))
    with pytest.raises(
        StagingRefused, match=r"host '127.0.0.1' is not allowed here \(allowed hosts: \*.org\)"
    ):
        await cache.stage(http(url), StagingPolicy(allowed_hosts=["*.org"]))

    assert origin.gets["/x"] == 0
    assert metric("cirasa_staging_failures_total", platform=platform, reason="StagingRefused") == 2


async def test_each_redirect_is_checked_before_it_is_followed(origin: Origin, cache: ContentCache) -> None:
    origin.serve("/data.fits", b"payload")
    allowed = origin.serve("/moved", status=302, redirect="/data.fits")
    elsewhere = origin.serve("/away", status=302, redirect=origin.url("/data.fits", host="localhost"))

    item = await cache.stage(http(allowed), POLICY)
    assert item.path.read_bytes() == b"payload"
    assert origin.gets["/data.fits"] == 1

    with pytest.raises(StagingRefused, match=r"localhost:\d+/data.fits: host 'localhost' is not allowed"):
        await cache.stage(http(elsewhere), POLICY)
    assert origin.gets["/away"] == 1
    assert origin.gets["/data.fits"] == 1  # the refused hop was never contacted


def test_the_policy_matches_hosts_and_ports_by_pattern() -> None:
    policy = StagingPolicy(allowed_hosts=["*.example.org", "127.0.0.1:8443"])
    policy.check_url("https://data.example.org/x")
    policy.check_url("https://127.0.0.1:8443/x")
    policy.check_url("s3://bucket/key")  # a bucket, not a host
    with pytest.raises(StagingRefused):
        policy.check_url("https://127.0.0.1:9000/x")
    with pytest.raises(StagingRefused):
        policy.check_url("https://example.org.evil.com/x")
    with pytest.raises(StagingRefused, match="scheme 'file'"):
        policy.check_url("file:///etc/passwd")


# --- eviction --------------------------------------------------------------------------------------


async def test_eviction_drops_the_least_recently_used(origin: Origin, tmp_path: Path, platform: str) -> None:
    cache = ContentCache(tmp_path / "lru", max_bytes=250, platform=platform)
    blobs = {name: os.urandom(100) for name in "abc"}
    urls = {name: origin.serve(f"/{name}", data) for name, data in blobs.items()}

    a = await cache.stage(http(urls["a"]), POLICY)
    b = await cache.stage(http(urls["b"]), POLICY)
    assert (await cache.stage(http(urls["a"]), POLICY)).hit  # a is now used more recently than b
    c = await cache.stage(http(urls["c"]), POLICY)  # 300 bytes > 250: one must go

    assert a.path.exists() and c.path.exists()
    assert not b.path.exists()
    assert not (cache.root / "keys" / b.key).exists()
    assert metric("cirasa_staging_evictions_total", platform=platform) == 1
    assert metric("cirasa_staging_cache_bytes", platform=platform) == 200

    again = await cache.stage(http(urls["b"]), POLICY)  # fetched anew, and a (now the oldest) goes
    assert not again.hit and origin.gets["/b"] == 2
    assert not a.path.exists() and c.path.exists() and again.path.exists()


async def test_the_blob_just_fetched_is_never_evicted(origin: Origin, tmp_path: Path, platform: str) -> None:
    cache = ContentCache(tmp_path / "lru", max_bytes=150, platform=platform)
    old = await cache.stage(http(origin.serve("/old", os.urandom(100))), POLICY)
    new = await cache.stage(http(origin.serve("/new", os.urandom(100))), POLICY)
    assert new.path.exists() and not old.path.exists()


# --- into the job ----------------------------------------------------------------------------------


async def test_read_only_is_a_hard_link_and_writable_a_copy_of_the_job_s_own(
    origin: Origin, cache: ContentCache, tmp_path: Path
) -> None:
    data = os.urandom(4000)
    item = await cache.stage(http(origin.serve("/x.fits", data)), POLICY)

    shown = tmp_path / "job" / "in" / "x.fits"
    link_into(item, shown, writable=False)
    assert shown.read_bytes() == data
    assert shown.stat().st_ino == item.path.stat().st_ino
    assert shown.stat().st_mode & 0o777 == 0o444

    mine = tmp_path / "job" / "rw" / "x.fits"
    link_into(item, mine, writable=True)
    assert mine.stat().st_ino != item.path.stat().st_ino
    assert mine.stat().st_mode & 0o777 == 0o644
    mine.write_bytes(b"changed by the job")
    assert item.path.read_bytes() == data

    link_into(item, shown, writable=False)  # a second time: replaced, no error
    assert shown.read_bytes() == data


async def test_a_link_to_an_evicted_blob_says_to_stage_again(
    origin: Origin, cache: ContentCache, tmp_path: Path
) -> None:
    item = await cache.stage(http(origin.serve("/x", b"x")), POLICY)
    item.path.unlink()
    with pytest.raises(StagingError, match="stage it again"):
        link_into(item, tmp_path / "job" / "x", writable=False)
    assert list((tmp_path / "job").iterdir()) == []


async def test_progress_rises_to_the_size(origin: Origin, cache: ContentCache) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    url = origin.serve("/big", data)
    seen: list[tuple[int, int | None]] = []

    await cache.stage(http(url), POLICY, progress=lambda done, total: seen.append((done, total)))

    assert len(seen) >= 3  # every MiB, and at the end
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert seen[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in seen)

    hits: list[tuple[int, int | None]] = []
    await cache.stage(http(url), POLICY, progress=lambda done, total: hits.append((done, total)))
    assert hits == [(len(data), len(data))]
