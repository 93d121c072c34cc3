"""The published JSON Schemas of the events: in step with the code, and a change that would break an
existing consumer is caught (and refused by ``cirasa schemas``) while additive ones pass."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from cirasa.cli.contract_commands import schema_changes
from cirasa.cli.main import app
from cirasa.common.events import EVENT_TYPES, decode_event
from cirasa.common.schemas import EVENTS_DIR, breaking_changes, current_schemas, published_schema

runner = CliRunner()
JSC = "JobStateChanged"


def test_every_event_is_published_as_the_code_defines_it() -> None:
    problems, stale = schema_changes()
    assert problems == [], "breaking changes: give the event a new version"
    assert stale == {}, "run: cirasa schemas"
    assert {name for _, name in current_schemas()} == set(EVENT_TYPES)


def published(name: str) -> dict[str, Any]:
    schema = published_schema(1, name)
    assert schema is not None
    return copy.deepcopy(schema)


def test_additive_changes_break_nobody() -> None:
    old = published("JobStateChanged")
    new = copy.deepcopy(old)
    new["properties"]["queue_position"] = {"type": "integer"}  # a new field
    new["required"] = [*new.get("required", []), "queue_position"]
    new["$defs"]["JobState"]["enum"].append("SUSPENDED")  # a new enum value
    new["properties"]["exit_code"] = {"type": "integer", "minimum": -1}  # a narrower value
    assert breaking_changes(old, new) == []


@pytest.mark.parametrize(
    ("event", "change", "expected"),
    [
        (JSC, lambda s: s["properties"].pop("seq"), "seq: removed"),
        (
            "JobStateChanged",
            lambda s: s["properties"].update(seq={"type": "string"}),
            "seq: may now be string",
        ),
        (JSC, lambda s: s["required"].remove("seq"), "seq: no longer always present"),
        (
            "JobStateChanged",
            lambda s: s["properties"]["type"].update(const="JobChanged"),
            "type: the constant",
        ),
        (
            "JobStateChanged",
            lambda s: s["properties"].update(elapsed_s={"type": "string"}),
            "elapsed_s: may now be string",
        ),
        (
            "TaskProposed",
            lambda s: s["$defs"]["InputFile"]["properties"].pop("relpath"),
            "inputs[].relpath: removed",
        ),
        (
            "TaskProposed",
            lambda s: s["$defs"]["ResourceRequest"]["properties"].update(min_cores={"type": "number"}),
            "resources.min_cores: may now be number",
        ),
    ],
)
def test_breaking_changes_are_caught(event: str, change: Any, expected: str) -> None:
    old = published(event)
    new = copy.deepcopy(old)
    change(new)
    found = breaking_changes(old, new)
    assert any(expected in problem for problem in found), found


def test_the_schemas_command_refuses_to_publish_a_breaking_change(tmp_path: Path) -> None:
    published_dir = tmp_path / "events"
    shutil.copytree(EVENTS_DIR, published_dir)
    target = published_dir / "v1" / "JobStateChanged.json"
    old = published("JobStateChanged")
    old["properties"]["legacy_field"] = {"type": "string"}  # consumers were promised it; the code lost it
    target.write_text(json.dumps(old))
    before = target.read_text()
    result = runner.invoke(app, ["schemas", "--out", str(published_dir)])
    assert result.exit_code == 1
    assert "JobStateChanged v1: legacy_field: removed" in result.output
    assert target.read_text() == before

    target.unlink()  # a version not published yet is simply written
    written = runner.invoke(app, ["schemas", "--out", str(published_dir)])
    assert written.exit_code == 0 and target.is_file()
    assert runner.invoke(app, ["schemas", "--check", "--out", str(published_dir)]).exit_code == 0


def test_the_examples_in_docs_events_md_are_events_as_published() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    assert {e["type"] for e in examples} == set(EVENT_TYPES), "one example per event type"
    for example in examples:
        event = decode_event(example)
        assert json.loads(event.model_dump_json()) == example, "every field, as the code writes it"
        schema = published_schema(example["version"], example["type"])
        assert schema is not None
        jsonschema.validate(example, schema)


def test_a_new_field_breaks_consumers_that_were_promised_no_other_fields() -> None:
    old = published("TaskProposed")
    old["$defs"]["InputFile"]["additionalProperties"] = False
    new = copy.deepcopy(old)
    new["$defs"]["InputFile"]["properties"]["checksum"] = {"type": "string"}
    refused = "inputs[]: consumers of the published schema refuse the new checksum"
    assert breaking_changes(old, new) == [refused]
    del new["$defs"]["InputFile"]["additionalProperties"]  # the published schemas promise nothing of the kind
    assert breaking_changes(published("TaskProposed"), new) == []
