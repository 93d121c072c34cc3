"""Reading JSON and YAML request bodies within bounds, before anything looks at what they say.

A body is refused with :class:`BadRequest` (each face renders it) when it nests deeper than
``MAX_DEPTH``, uses YAML anchors or aliases (each level of aliases multiplies the document), or holds
what cannot be stored and rendered back as JSON and XML: non-finite floats, integers beyond 64 bits,
lone surrogates, non-string keys, YAML-only types, or control characters in keys. Syntax errors are
left to the caller as ``ValueError`` or ``yaml.YAMLError``, so each face words them as it always has.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

from cirasa.gateway.errors import BadRequest

MAX_DEPTH = 32
INT64 = 2**63
# C0 and C1 control characters and DEL: refused in keys and tags, which UWS renders as XML.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TOO_DEEP = f"request body nested deeper than {MAX_DEPTH} levels"


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` without anchors or aliases, refusing nesting beyond ``MAX_DEPTH`` while it
    composes (the composer recurses, so a deep document would otherwise exhaust the stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise BadRequest("YAML anchors and aliases are not accepted")
        if not isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadRequest(_TOO_DEEP)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _timestamp_as_text(loader: _BoundedLoader, node: yaml.Node) -> str:
    """A YAML timestamp stays the text it was written as, as it would be in JSON."""
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _no_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON number")


def load_json(raw: bytes | str) -> Any:
    """The body as JSON; ``ValueError`` (``UnicodeDecodeError`` too) when it is not UTF-8 JSON."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
    check_plain(value)
    return value


def load_yaml(text: str) -> Any:
    """The body as YAML (safe tags only); ``yaml.YAMLError`` when it is not YAML."""
    loader = _BoundedLoader(text)
    try:
        value = loader.get_single_data()
    finally:
        loader.dispose()
    check_plain(value)
    return value


def check_plain(value: Any) -> None:
    """Refuse what JSON could not say or what we could not store and render back (see above).

    Walks with its own stack, so a value too deep for recursion is refused rather than crashing.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise BadRequest(_TOO_DEEP)
            if isinstance(item, dict):
                for key in item:
                    _check_key(key)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        else:
            _check_scalar(item)


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise BadRequest(f"keys must be strings, not {type(key).__name__} ({key!r})")
    _check_scalar(key)
    if has_control(key):
        raise BadRequest(f"key {key!r} contains control characters")


def _check_scalar(item: Any) -> None:
    if item is None or isinstance(item, bool):
        return
    if isinstance(item, str):
        if not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("strings must not hold lone surrogates (\\ud800-\\udfff)") from None
    elif isinstance(item, int):
        if not -INT64 <= item < INT64:
            raise BadRequest(f"integers must fit in 64 bits, got one of {item.bit_length()} bits")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise BadRequest(f"{item} is not a JSON number")
    else:
        raise BadRequest(f"values of type {type(item).__name__} are not accepted: use JSON types")
