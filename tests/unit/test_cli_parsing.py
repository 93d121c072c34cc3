"""The CLI's pure parts: reading each face's error reply, id prefixes, option values, text tables."""

from __future__ import annotations

import httpx
import pytest
import typer

from cirasa.cli import ids
from cirasa.cli.errors import EXIT_SERVER, EXIT_USAGE, ApiError, CliError, server_message, transport_error
from cirasa.cli.job_commands import human_seconds
from cirasa.cli.params import CoreRange, parse_cores, parse_duration, parse_options
from cirasa.cli.tables import render

SERVER = "http://127.0.0.1:8000"
A = "65a61cbe397e4b3c9d0a1b2c3d4e5f60"
B = "65a61cbe397e4b3c9d0a1b2c3d4e5f61"
C = "7f00aa11bb22cc33dd44ee55ff667788"


def reply(status: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", f"{SERVER}/x"), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (reply(404, json={"job_id": "", "status": "Job x not found for user anonymous!"}), "Job x not found"),
        (
            reply(
                400, json={"kind": "urn:error", "status": 400, "message": "'30m' is not an ISO-8601 duration"}
            ),
            "'30m' is not an ISO-8601 duration",
        ),
        (reply(401, json={"error": "invalid_token", "error_description": "token expired"}), "token expired"),
        (reply(422, json={"detail": "bad thing"}), "bad thing"),
        (reply(404, text="No job abc", headers={"content-type": "text/plain"}), "No job abc"),
        (reply(502, text="<html><b>Bad</b></html>", headers={"content-type": "text/html"}), "Bad Gateway"),
        (reply(500, content=b""), "Internal Server Error"),
    ],
)
def test_each_faces_error_message_is_read(response: httpx.Response, message: str) -> None:
    assert server_message(response).startswith(message)


def test_api_error_is_one_line_with_the_code_and_the_servers_words() -> None:
    error = ApiError(reply(400, json={"kind": "k", "status": 400, "message": "line one\n  line two"}))
    assert error.message == "HTTP 400: line one line two"
    assert error.exit_code == EXIT_USAGE
    assert ApiError(reply(503, json={"status": "busy"})).exit_code == EXIT_SERVER


def test_a_refused_connection_says_how_to_start_the_server() -> None:
    error = transport_error(SERVER, httpx.ConnectError("[Errno 111] Connection refused"))
    assert error.message == (
        f"cannot reach the CIRASA server at {SERVER}: connection refused — "
        "start it with `cirasa dev` or pass --server"
    )
    assert error.exit_code == EXIT_SERVER
    slow = transport_error(SERVER, httpx.ReadTimeout("timed out"))
    assert "did not answer in time" in slow.message


def test_a_unique_prefix_or_a_cut_id_names_one_id() -> None:
    assert ids.resolve(A, [A, B, C]) == A
    assert ids.resolve("7f", [A, B, C]) == C
    assert ids.resolve("7F00AA…", [A, B, C]) == C  # as copied from a table that cut it
    assert ids.resolve(" 7f00... ", [A, B, C]) == C


def test_an_ambiguous_prefix_lists_the_candidates() -> None:
    with pytest.raises(CliError) as caught:
        ids.resolve("65a61cbe", [A, B, C])
    assert "ambiguous" in caught.value.message
    assert A in caught.value.message and B in caught.value.message and C not in caught.value.message


@pytest.mark.parametrize("typed", ["ff", "", "…"])
def test_no_match_is_a_one_line_error(typed: str) -> None:
    with pytest.raises(CliError) as caught:
        ids.resolve(typed, [A, B], "file", "cirasa files")
    assert "`cirasa files`" in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("typed", "sent"),
    [("PT30M", "PT30M"), ("pt5m", "PT5M"), ("P1DT2H", "P1DT2H"), ("30m", "PT30M"), ("1h30m", "PT1H30M"),
     ("90s", "PT1M30S"), ("2h", "PT2H"), ("1d", "PT24H")],
)  # fmt: skip
def test_durations_are_iso_8601_or_a_shorthand_made_iso(typed: str, sent: str) -> None:
    assert parse_duration(typed) == sent


@pytest.mark.parametrize("typed", ["30x", "soon", "PT", "P", "PT0S", "0m", "30"])
def test_a_bad_duration_says_what_is_wanted(typed: str) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        parse_duration(typed)
    assert repr(typed) in caught.value.message


def test_cores_are_min_or_min_max() -> None:
    assert parse_cores("2") == CoreRange(2, 2)
    assert parse_cores("1-4") == CoreRange(1, 4)
    assert str(CoreRange(1, 4)) == "1-4" and str(CoreRange(3, 3)) == "3"
    for typed, words in [("two", "'two' is not a valid integer"), ("4-1", "MAX is below MIN"), ("0", "at 1")]:
        with pytest.raises(typer.BadParameter) as caught:
            parse_cores(typed)
        assert words in caught.value.message


def test_app_options_are_key_value_with_json_values() -> None:
    assert parse_options(["seedthr=5", "no-clean=true", "name=abc"]) == {
        "seedthr": 5,
        "no-clean": True,
        "name": "abc",
    }
    with pytest.raises(typer.BadParameter, match="'seedthr' is not key=value"):
        parse_options(["seedthr"])


def test_a_table_keeps_whole_ids_and_right_aligns_numbers() -> None:
    text = render(("job_id", "n", "status"), [(A, "5", "done"), (C, "12.5", "a much longer status")])
    lines = text.splitlines()
    assert lines[1].startswith(A) and lines[2].startswith(C)
    assert lines[1].index("5  done") + 1 == lines[2].index("12.5") + 4  # both end in the same column
    assert all(line == line.rstrip() for line in lines)


def test_elapsed_times_read_as_people_say_them() -> None:
    assert human_seconds(12.34) == "12.3 s"
    assert human_seconds(245) == "4 min 05 s"
    assert human_seconds(7380) == "2 h 03 min"
    assert human_seconds(None) == "-"
