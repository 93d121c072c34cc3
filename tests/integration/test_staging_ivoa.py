"""IVOA datasets staged through DataLink against a real HTTP server on 127.0.0.1: by DataLink URL,
by ivo:// identifier through the platform's DataLink services, and the errors a user must understand."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pytest

from cirasa.backends.staging import ContentCache, FetchFailed, StagingError, StagingPolicy, StagingRefused
from cirasa.common.events import DataSource
from tests.file_server import Origin

FITS = b"SIMPLE  =                    T / a FITS-like file".ljust(2880, b" ")
IVOID = "ivo://example.org/survey?obs-1"

COLUMNS = """
      <FIELD name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
      <FIELD name="access_url" datatype="char" arraysize="*" ucd="meta.ref.url"/>
      <FIELD name="service_def" datatype="char" arraysize="*" ucd="meta.ref"/>
      <FIELD name="error_message" datatype="char" arraysize="*" ucd="meta.code.error"/>
      <FIELD name="semantics" datatype="char" arraysize="*" ucd="meta.code"/>
      <FIELD name="description" datatype="char" arraysize="*" ucd="meta.note"/>
      <FIELD name="content_type" datatype="char" arraysize="*" ucd="meta.code.mime"/>
      <FIELD name="content_length" datatype="long" ucd="phys.size;meta.file" unit="byte"/>"""


def datalink(rows: list[tuple[str, str, str, str]]) -> bytes:
    """A DataLink response; rows of (ID, access_url, error_message, semantics)."""

    def row(ident: str, url: str, error: str, semantics: str) -> str:
        kind = "image/png" if semantics == "#preview" else "application/fits"
        return (
            f"\n        <TR><TD>{escape(ident)}</TD><TD>{escape(url)}</TD><TD/><TD>{escape(error)}</TD>"
            f"<TD>{semantics}</TD><TD>{semantics[1:]} of {escape(ident)}</TD>"
            f"<TD>{kind if url else ''}</TD><TD>{len(FITS) if url else ''}</TD></TR>"
        )

    cells = "".join(row(*r) for r in rows)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
  <RESOURCE type="results">
    <INFO name="standardID" value="ivo://ivoa.net/std/DataLink#links-1.1"/>
    <TABLE>{COLUMNS}
      <DATA><TABLEDATA>{cells}
      </TABLEDATA></DATA>
    </TABLE>
  </RESOURCE>
</VOTABLE>
""".encode()


VOTABLE = "application/x-votable+xml;content=datalink"


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    return ContentCache(tmp_path / "cache", max_bytes=10**8, platform="test-ivoa")


POLICY = StagingPolicy(allowed_hosts=["127.0.0.1"], timeout_s=10)


def ivoa(location: str, endpoint: str | None = None) -> DataSource:
    return DataSource(name="obs", scheme="ivoa", location=location, endpoint=endpoint)


def serve_links(origin: Origin, path: str, ident: str = IVOID) -> str:
    data_url = origin.serve("/data/obs-1.fits", FITS, content_type="application/fits")
    rows = [
        (ident, origin.url("/data/obs-1.png"), "", "#preview"),
        (ident, "", "NotFoundFault: the calibrated copy is gone", "#this"),
        (ident, data_url, "", "#this"),
    ]
    return origin.serve(path, datalink(rows), content_type=VOTABLE)


async def test_a_dataset_is_staged_by_its_datalink_url(origin: Origin, cache: ContentCache) -> None:
    url = serve_links(origin, "/links/obs-1")

    item = await cache.stage(ivoa(url), POLICY)

    assert item.path.read_bytes() == FITS
    assert item.digest == hashlib.sha256(FITS).hexdigest() and item.host == "127.0.0.1"
    assert (origin.gets["/links/obs-1"], origin.gets["/data/obs-1.fits"], origin.gets["/data/obs-1.png"]) == (
        1,
        1,
        0,
    )
    assert (await cache.stage(ivoa(url), POLICY)).hit


async def test_an_identifier_is_resolved_by_the_longest_known_prefix(
    origin: Origin, cache: ContentCache
) -> None:
    service = serve_links(origin, "/survey/links")
    policy = POLICY.model_copy(
        update={
            "datalink_services": {
                "ivo://example.org": origin.url("/other"),
                "ivo://EXAMPLE.org/survey": service,
            }
        }
    )

    item = await cache.stage(ivoa(IVOID), policy)

    assert item.path.read_bytes() == FITS
    assert origin.gets["/other"] == 0
    asked = [r for r in origin.requests if r.startswith("/survey/links")]
    assert [parse_qs(urlsplit(r).query)["ID"] for r in asked] == [[IVOID]]


async def test_an_identifier_may_name_its_service_itself(origin: Origin, cache: ContentCache) -> None:
    service = serve_links(origin, "/own/links")
    item = await cache.stage(ivoa(IVOID, endpoint=service), POLICY)
    assert item.path.read_bytes() == FITS


async def test_an_identifier_with_no_known_service_is_refused(origin: Origin, cache: ContentCache) -> None:
    policy = POLICY.model_copy(update={"datalink_services": {"ivo://example.org/other": origin.url("/x")}})
    with pytest.raises(StagingError) as caught:
        await cache.stage(ivoa("ivo://example.org/survey?obs-1"), policy)
    assert str(caught.value) == (
        "data 'obs': no DataLink service is known for ivo://example.org/survey?obs-1 (give the source an "
        "endpoint, or add its authority to the platform's datalink_services)"
    )
    assert origin.requests == []


async def test_the_service_s_error_is_shown(origin: Origin, cache: ContentCache) -> None:
    url = origin.serve("/links/gone", datalink([(IVOID, "", "NotFoundFault: no such dataset", "#this")]))
    with pytest.raises(FetchFailed, match="the DataLink service answered: NotFoundFault: no such dataset"):
        await cache.stage(ivoa(url), POLICY)


async def test_an_answer_that_is_no_datalink_table_is_said_so(origin: Origin, cache: ContentCache) -> None:
    url = origin.serve("/links/html", b"<html><body>Maintenance</body></html>", content_type="text/html")
    with pytest.raises(FetchFailed, match="did not answer a DataLink table"):
        await cache.stage(ivoa(url), POLICY)


async def test_the_link_a_service_gives_is_checked_by_the_policy(origin: Origin, cache: ContentCache) -> None:
    far = origin.url("/data/obs-1.fits", host="localhost")
    url = origin.serve("/links/far", datalink([(IVOID, far, "", "#this")]))
    with pytest.raises(StagingRefused, match="host 'localhost' is not allowed"):
        await cache.stage(ivoa(url), POLICY)
    assert origin.gets["/data/obs-1.fits"] == 0
