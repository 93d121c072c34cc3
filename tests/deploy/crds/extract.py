"""Refresh a custom resource's schema from its CustomResourceDefinition (run by hand, offline).

    .venv/bin/python tests/deploy/crds/extract.py "<project> <version> <path in its repository>" CRD.yaml

Writes ``<group>_<kind>_<version>.json`` beside this file for every served version of the CRD: its
``openAPIV3Schema`` without the descriptions (most of a CRD's size), and where it came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def extract(source: str, crd_path: Path) -> list[Path]:
    crd = yaml.safe_load(crd_path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        out = HERE / f"{group}_{kind}_{version['name']}.json"
        doc = {
            "source": source,
            "apiVersion": f"{group}/{version['name']}",
            "kind": kind,
            "openAPIV3Schema": without_descriptions(version["schema"]["openAPIV3Schema"]),
        }
        out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        written.append(out)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    for path in extract(sys.argv[1], Path(sys.argv[2])):
        print(path.name)
