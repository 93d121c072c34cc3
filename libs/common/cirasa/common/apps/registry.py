"""Apps (source finders): typed option schemas, enforced, and the argument list each one runs with.

An app is described in caesar-rest's format (``describe()``), validates job options strictly (no
``true`` for an int, no float truncation, bounds and enums enforced, unknown options reported) and
builds its command as an argument list; no shell ever sees it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from cirasa.common.events import ResourceRequest

OptionType = Literal["none", "int", "float", "str"]


class OptionError(ValueError):
    """A job option the app does not accept; the message names the option."""


@dataclass(frozen=True)
class Option:
    name: str
    type: OptionType
    description: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    category: str = ""
    subcategory: str = ""
    advanced: bool = False
    mandatory: bool = False

    @property
    def is_flag(self) -> bool:
        return self.type == "none"

    def describe(self) -> dict[str, Any]:
        """caesar-rest's per-option keys."""
        out: dict[str, Any] = {
            "mandatory": self.mandatory,
            "type": self.type,
            "description": self.description,
            "advanced": int(self.advanced),
            "category": self.category,
            "subcategory": self.subcategory,
        }
        if self.is_flag:
            out["enum"] = False
        elif self.allowed is not None:
            out.update(default=self.default, allowed_values=list(self.allowed), enum=True)
        else:
            out.update(default=self.default, min=self.min, max=self.max, enum=False)
        return out

    def validate(self, value: Any) -> Any:
        if self.is_flag:
            if not isinstance(value, bool):
                raise OptionError(f"Option {self.name} is a flag and needs a JSON boolean, got {value!r}")
            return value
        if self.allowed is not None:
            if not isinstance(value, str) or value not in self.allowed:
                raise OptionError(
                    f"Option {self.name} value {value!r} is not among valid enumerations {list(self.allowed)}"
                )
            return value
        if self.type == "str":
            if not isinstance(value, str) or len(value) > 1024:
                raise OptionError(f"Option {self.name} needs a string (at most 1024 characters)")
            return value
        number = self._number(value)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise OptionError(f"Option {self.name} value {value!r} is out of bounds [{self.min}, {self.max}]")
        return number

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(f"Option {self.name} needs a number of type {self.type}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"Option {self.name} must be a finite number, got {value!r}")
        if self.type == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise OptionError(
                        f"Option {self.name} needs an integer, got {value!r} (no silent truncation)"
                    )
                return int(value)
            return value
        return float(value)

    def argv(self, value: Any) -> list[str]:
        if self.is_flag:
            return [f"--{self.name}"] if value else []
        return [f"--{self.name}={value}"]


@dataclass(frozen=True)
class ValidatedOptions:
    values: dict[str, Any]
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class App:
    name: str
    description: str
    options: tuple[Option, ...]
    runner: Literal["python", "container"]
    module: str | None = None
    image: str | None = None
    resources: ResourceRequest = field(default_factory=ResourceRequest)
    diagnostic: bool = False

    @property
    def runnable_without_container(self) -> bool:
        return self.runner == "python"

    def describe(self) -> dict[str, dict[str, Any]]:
        return {opt.name: opt.describe() for opt in self.options}

    def validate(self, job_inputs: Any) -> ValidatedOptions:
        if not isinstance(job_inputs, dict):
            raise OptionError("Given job inputs data is not a dictionary!")
        known = {opt.name: opt for opt in self.options}
        values: dict[str, Any] = {}
        for opt in self.options:
            if opt.name in job_inputs:
                values[opt.name] = opt.validate(job_inputs[opt.name])
            elif opt.mandatory:
                raise OptionError(f"Mandatory option {opt.name} not present!")
        ignored = sorted(k for k in job_inputs if k not in known)
        return ValidatedOptions(values, ignored)

    def build_argv(self, options: dict[str, Any], input_path: str) -> list[str]:
        """The command, as a list, run in the job directory; outputs go to the working directory."""
        if self.module is None:
            raise ValueError(f"app {self.name} has no Python runner; it needs a container platform")
        args = [sys.executable, "-m", self.module]
        for opt in self.options:  # declaration order, like caesar-rest
            if opt.name in options:
                args += opt.argv(options[opt.name])
        return [*args, "--image", input_path, "--out-dir", "."]


def _f(name: str, desc: str, default: float, lo: float, hi: float, cat: str, **kw: Any) -> Option:
    return Option(name, "float", desc, default, lo, hi, category=cat, **kw)


def _i(name: str, desc: str, default: int, lo: float, hi: float, cat: str, **kw: Any) -> Option:
    return Option(name, "int", desc, default, lo, hi, category=cat, **kw)


def _flag(name: str, desc: str, cat: str, **kw: Any) -> Option:
    return Option(name, "none", desc, category=cat, **kw)


SEP = App(
    name="sep",
    description="Source Extractor as a Python library (sep): background, detection, deblending",
    runner="python",
    module="cirasa.common.apps.sep_finder",
    options=(
        _f("seedthr", "Detection threshold in units of the background rms", 5.0, 0.5, 1e4, "COMPACT-SOURCES"),
        _i("minarea", "Minimum number of pixels above threshold", 5, 1, 1e4, "COMPACT-SOURCES"),
        _f(
            "deblend-cont",
            "Minimum contrast ratio for deblending",
            0.005,
            0.0,
            1.0,
            "COMPACT-SOURCES",
            advanced=True,
        ),
        _flag(
            "no-clean",
            "Skip the cleaning of spurious detections (faster on crowded maps)",
            "COMPACT-SOURCES",
            advanced=True,
        ),
        _flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=0.5, max_memory_gib=2.0, duration_s=1800
    ),
)

SLEEP = App(
    name="sleep",
    description="Diagnostic app: sleeps, then exits with the given code (for tests and benchmarks)",
    runner="python",
    module="cirasa.common.apps.sleep_app",
    diagnostic=True,
    options=(
        _f("seconds", "How long to sleep", 1.0, 0.0, 86400.0, "RUN"),
        _i("exit-code", "Exit code to finish with", 0, 0, 255, "RUN"),
    ),
    resources=ResourceRequest(
        min_cores=1, max_cores=1, min_memory_gib=0.25, max_memory_gib=0.25, duration_s=600
    ),
)

AEGEAN = App(
    name="aegean",
    description="Aegean (BANE then aegean), caesar-rest's container image",
    runner="container",
    image="sriggi/aegean-job:latest",
    options=(
        _flag("save-bkgmap", "Save the background map", "OUTPUT"),
        _flag("save-rmsmap", "Save the rms map", "OUTPUT"),
        _i("bkgbox", "Box size in pixels for the background", 100, 5, 1e4, "IMGBKG"),
        _i("bkggrid", "Grid size in pixels for the background", 20, 5, 1000, "IMGBKG"),
        _f("seedthr", "Seed threshold in sigmas", 5.0, 0, 1e4, "COMPACT-SOURCES"),
        _f("mergethr", "Merge (flood) threshold in sigmas", 2.6, 0, 1e4, "COMPACT-SOURCES"),
        _i(
            "fit-maxcomponents",
            "Maximum number of components fitted per island",
            3,
            0,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        _i("ncores", "Number of cores", 1, 1, 100, "RUN"),
        _flag("no-logredir", "Do not redirect logs to file", "RUN"),
    ),
)

CUTEX = App(
    name="cutex",
    description="CuTEx, caesar-rest's container image",
    runner="container",
    image="sriggi/cutex-job:latest",
    options=(
        _f("seedthr", "Seed threshold", 5.0, 0, 1e4, "COMPACT-SOURCES"),
        _i("npixmin", "Minimum number of pixels", 4, 1, 1e4, "COMPACT-SOURCES"),
        _f("npixpsf", "Number of pixels per PSF", 2.7, 1, 1e4, "COMPACT-SOURCES"),
        _f(
            "psflimmin",
            "Lower PSF size limit in fit",
            0.5,
            1e-4,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        _f(
            "psflimmax",
            "Upper PSF size limit in fit",
            2.0,
            1e-4,
            100,
            "COMPACT-SOURCES",
            subcategory="FITTING",
        ),
        _flag("no-logredir", "Do not redirect logs to file", "RUN"),
    ),
)

MRCNN = App(
    name="mrcnn",
    description="Mask R-CNN radio source detector, caesar-rest's container image",
    runner="container",
    image="sriggi/mrcnn-detect:latest",
    options=(
        _f("scoreThr", "Detected object score threshold", 0.7, 0, 1, "DETECT"),
        _f("iouThr", "IOU threshold between detected and ground truth objects", 0.6, 0, 1, "DETECT"),
    ),
)

APPS: dict[str, App] = {app.name: app for app in (SEP, AEGEAN, CUTEX, MRCNN, SLEEP)}


def get_app(name: str) -> App | None:
    return APPS.get(name)
