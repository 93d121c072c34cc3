"""Run a Jupyter notebook headless: ``python -m cirasa.finders.runners.notebook --image NB --out-dir DIR``.

The ExecutionBroker's ``jupyter-notebook`` executable on a local platform. The notebook (an uploaded
``.ipynb``) is executed top to bottom with nbclient in a fresh Python kernel whose working directory is
the job directory, so whatever it writes becomes the job's products; the executed notebook, with its
outputs, is saved as ``executed-<name>.ipynb``. A failing cell ends the job with exit code 1 and the
error in one line on stderr; an unreadable notebook exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cirasa.finders.runners.naming import safe_file_name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notebook_runner", description=__doc__)
    parser.add_argument("--image", type=Path, required=True, help="the notebook to run (.ipynb)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--cell-timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--image-name", default=None, help="the notebook's own name (names its copy)")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    try:
        notebook = nbformat.read(args.image, as_version=4)
    except (OSError, ValueError) as exc:  # nbformat raises ValueError subclasses for bad JSON / schema
        print(f"notebook_runner: cannot read {args.image.name}: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(safe_file_name(args.image_name or "", ".ipynb") or args.image.name).stem
    executed = out_dir / f"executed-{stem}.ipynb"
    client = NotebookClient(
        notebook,
        timeout=args.cell_timeout,
        kernel_name=args.kernel,
        resources={"metadata": {"path": str(out_dir)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        nbformat.write(notebook, executed)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "a cell failed"
        print(f"notebook_runner: a cell failed: {last}", file=sys.stderr)
        return 1
    nbformat.write(notebook, executed)
    cells = sum(1 for c in notebook.cells if c.cell_type == "code")
    print(json.dumps({"code_cells": cells, "executed": executed.name}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
