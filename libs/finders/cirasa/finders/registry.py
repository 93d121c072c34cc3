"""Apps (source finders): typed option schemas, enforced, and the argument list each one runs with.

An app is described in caesar-rest's format (``describe()``), validates job options strictly (no
``true`` for an int, no float truncation, bounds and enums enforced, unknown options reported) and
builds its command as an argument list; no shell ever sees it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import import_module
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
    codes: dict[str, int] | None = field(default=None, hash=False)  # enum value -> code on the command line

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
        if self.codes is not None and value in self.codes:
            value = self.codes[value]
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
    default_args: tuple[str, ...] = ()
    input_flag: str = "--inputfile"
    cores_option: str | None = None  # an option that sets how many cores the job gets (caesar's nproc...)
    untrusted: bool = False  # runs code the user supplied: only where a sandbox can hold it

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

    def resources_for(self, options: dict[str, Any]) -> ResourceRequest:
        """The app's resource request, with the cores its options ask for (so none sit idle)."""
        cores = options.get(self.cores_option) if self.cores_option else None
        if not isinstance(cores, int) or cores < 1:
            return self.resources
        return self.resources.model_copy(update={"min_cores": cores, "max_cores": cores})

    def option_args(self, options: dict[str, Any]) -> list[str]:
        """Validated options as arguments, in declaration order (like caesar-rest)."""
        args: list[str] = []
        for opt in self.options:
            if opt.name in options:
                args += opt.argv(options[opt.name])
        return args

    def build_argv(self, options: dict[str, Any], input_path: str, input_name: str = "") -> list[str]:
        """The command of a Python-runner app, as a list, run in the job directory (its outputs' home);
        ``input_name`` is the input's own name (as uploaded), after which the products are named."""
        if self.module is None:
            raise ValueError(f"app {self.name} has no Python runner; it needs a container platform")
        named = ["--image-name", input_name] if input_name else []
        return [
            sys.executable,
            "-m",
            self.module,
            *self.option_args(options),
            "--image",
            input_path,
            *named,
            "--out-dir",
            ".",
        ]

    def container_args(self, options: dict[str, Any], input_path: str) -> list[str]:
        """Arguments for a container app's entrypoint: caesar-rest's default args, options, input."""
        return [*self.default_args, *self.option_args(options), f"{self.input_flag}={input_path}"]


def float_option(name: str, desc: str, default: float, lo: float, hi: float, cat: str, **kw: Any) -> Option:
    return Option(name, "float", desc, default, lo, hi, category=cat, **kw)


def int_option(name: str, desc: str, default: int, lo: float, hi: float, cat: str, **kw: Any) -> Option:
    return Option(name, "int", desc, default, lo, hi, category=cat, **kw)


def flag(name: str, desc: str, cat: str, **kw: Any) -> Option:
    return Option(name, "none", desc, category=cat, **kw)


# one module per app under cirasa.finders.specs, each defining APP
APP_MODULES: tuple[str, ...] = (
    "sep",
    "caesar",
    "aegean",
    "pybdsf",
    "photutils",
    "cutex",
    "mrcnn",
    "sleep",
    "notebook",
    "consensus",
)


def _load() -> dict[str, App]:
    apps = [import_module(f"cirasa.finders.specs.{name}").APP for name in APP_MODULES]
    return {app.name: app for app in apps}


APPS: dict[str, App] = _load()


def get_app(name: str) -> App | None:
    return APPS.get(name)
