"""The event contract: documented AsyncAPI in sync with the code, and every event round-trips."""

from __future__ import annotations

import json

import pytest

from cirasa.cli.asyncapi import asyncapi_document
from cirasa.common.events import EVENT_TYPES, JobState, JobStateChanged, TaskProposed, decode_event
from cirasa.common.schemas import ASYNCAPI


def test_committed_asyncapi_matches_the_code() -> None:
    committed = json.loads(ASYNCAPI.read_text())
    assert committed == json.loads(asyncapi_document()), "run: cirasa asyncapi"


def test_asyncapi_names_every_event() -> None:
    schemas = json.loads(asyncapi_document())["components"]["schemas"]
    for name in EVENT_TYPES:
        assert name in schemas


def test_events_round_trip_through_json() -> None:
    ev = JobStateChanged(correlation_id="j", job_id="j", state=JobState.TIMED_OUT, seq=3, exit_code=124)
    back = decode_event(ev.model_dump_json())
    assert back == ev and isinstance(back, JobStateChanged)
    assert json.loads(ev.model_dump_json())["state"] == "TIMED-OUT"


def test_unknown_or_incomplete_events_are_refused() -> None:
    with pytest.raises(ValueError):
        decode_event({"type": "Nope", "correlation_id": "x"})
    with pytest.raises(ValueError):
        decode_event({"type": "TaskProposed", "correlation_id": "x"})  # no app
    assert isinstance(
        decode_event({"type": "TaskProposed", "correlation_id": "x", "app": "sep"}), TaskProposed
    )


def test_terminal_states_are_sinks() -> None:
    assert {s.value for s in JobState if s.is_terminal} == {
        "SUCCESS",
        "FAILURE",
        "ABORTED",
        "CANCELED",
        "TIMED-OUT",
    }
