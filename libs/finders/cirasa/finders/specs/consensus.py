"""The consensus app, run by ``cirasa.finders.runners.consensus``: several finders on one image, one
catalogue.

Why: every finder misses sources another one finds (sep blends close pairs and loses sources in the
wings of bright ones; photutils smooths before detecting; Aegean and PyBDSF fit Gaussians), and every
finder run deeper than 5 sigma reports more noise peaks. A noise peak is rarely found at the same place
by two different methods, so the finders are run a little deeper (``seedthr``, passed to each finder's
own threshold option) and a source is kept when enough of them found it (``min-votes``; 0 means a
majority of the finders that ran and at least 2), or when one finder alone found it bright (peak above
``solo-snr`` times the noise: a bright source is real even when only one method separates it from its
neighbour).

The defaults come from issue 15's crowded map (``bench/finders.py --sky realistic``, seeds 1-3, each
finder with its own tuned defaults): sep, photutils and pybdsf at 4.25 sigma, a source kept when two of
the three found it (``min-votes`` 0, a majority). It finds 90.4 / 89.5 / 89.2% of the sources above
5 sigma at 99.65-99.66% reliability, more than any one finder (pybdsf 89.9 / 88.9 / 89.1% at 99.6%,
photutils 82-84%, sep 78-81%) and more reliably. Tried and not chosen: the same vote at 4 sigma (90.6 /
90.0 / 89.5%, but 99.45% on seed 2) and at 4.5 sigma (89.9 / 88.6 / 88.6%, no more complete than pybdsf
alone); sep and photutils either one at 4.5 sigma (86.4 / 86.1 / 85.0% at 99.3-99.7%) or at 5 sigma
(85.4 / 84.1 / 82.9%); sep and photutils both at 4 sigma (75.5%, 100%).

``cirasa.finders.consensus`` has the rule; the provenance of every source (which finders, their ids,
positions and fluxes) and the vote on every merged source are ``consensus-<image>.json``.

Resources: the finders run at once, one core each (at most 4 finders), when the job has as many cores;
on fewer they take turns. So the job asks for one core and up to as many as finders, for the sum of
their memory (they may all be in memory together) and for the longest of their wall times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cirasa.common.events import ResourceRequest
from cirasa.finders.registry import App, Option, OptionError, flag, float_option, int_option
from cirasa.finders.specs import aegean, photutils, pybdsf, sep

# The finders a consensus job may run (Python runners, all runnable here), each with the option that
# sets its detection threshold in sigmas.
THRESHOLD_OPTION: dict[str, str] = {
    "sep": "seedthr",
    "photutils": "seedthr",
    "aegean": "seedthr",
    "pybdsf": "thresh-pix",
}
FINDER_APPS: dict[str, App] = {
    "sep": sep.APP,
    "photutils": photutils.APP,
    "aegean": aegean.APP,
    "pybdsf": pybdsf.APP,
}
DEFAULT_FINDERS = "sep,photutils,pybdsf"
DEFAULT_SEEDTHR = 4.25
DEFAULT_MIN_VOTES = 0  # a majority
MAX_FINDERS = 4


def parse_finders(text: str) -> tuple[str, ...]:
    """The comma-separated finder names, checked: known, no repeats, at least one."""
    names = tuple(part.strip() for part in text.split(","))
    if not text.strip() or any(not name for name in names):
        raise OptionError(f"Option finders needs comma-separated finder names, got {text!r}")
    unknown = [name for name in names if name not in FINDER_APPS]
    if unknown:
        raise OptionError(
            f"Option finders: unknown finder {unknown[0]!r}; choose among {', '.join(FINDER_APPS)}"
        )
    if len(set(names)) != len(names):
        raise OptionError(f"Option finders names a finder twice: {text!r}")
    return names


@dataclass(frozen=True)
class FinderListOption(Option):
    """A string option holding comma-separated finder names, normalised to ``a,b``."""

    def validate(self, value: Any) -> Any:
        text = super().validate(value)
        return ",".join(parse_finders(text))


def resources(finders: tuple[str, ...]) -> ResourceRequest:
    """One core at least and one per finder at most, the sum of their memory, the longest wall time."""
    apps = [FINDER_APPS[name] for name in finders]
    cores = max(1, min(len(apps), MAX_FINDERS))
    return ResourceRequest(
        min_cores=1,
        max_cores=cores,
        min_memory_gib=sum(a.resources.min_memory_gib for a in apps),
        max_memory_gib=sum(a.resources.max_memory_gib for a in apps),
        duration_s=max(a.resources.duration_s for a in apps),
    )


@dataclass(frozen=True)
class ConsensusApp(App):
    """An app whose cores and memory follow the finders it is asked to run."""

    def resources_for(self, options: Mapping[str, Any]) -> ResourceRequest:
        text = options.get("finders", DEFAULT_FINDERS)
        return resources(parse_finders(text if isinstance(text, str) else DEFAULT_FINDERS))


APP = ConsensusApp(
    name="consensus",
    description=(
        "Consensus of several finders on one image: their catalogues merged, each source with the "
        "finders that found it, kept by a vote (or when one finder alone found it bright)"
    ),
    runner="python",
    module="cirasa.finders.runners.consensus",
    options=(
        FinderListOption(
            "finders",
            "str",
            f"Comma-separated finders to run, among {', '.join(FINDER_APPS)}",
            DEFAULT_FINDERS,
            category="CONSENSUS",
        ),
        int_option(
            "min-votes",
            "Finders that must find a source to keep it (0: a majority of the finders that ran, at least 2)",
            DEFAULT_MIN_VOTES,
            0,
            MAX_FINDERS,
            "CONSENSUS",
        ),
        float_option(
            "solo-snr",
            "Keep a source one finder alone found when its peak is above this many times the noise",
            10.0,
            1.0,
            1e6,
            "CONSENSUS",
        ),
        float_option(
            "seedthr",
            "Detection threshold of every finder, in units of the background rms (each finder's own option)",
            DEFAULT_SEEDTHR,
            3.0,
            1e4,
            "COMPACT-SOURCES",
        ),
        flag("no-preview", "Do not draw the preview PNG", "OUTPUT"),
    ),
    resources=resources(parse_finders(DEFAULT_FINDERS)),
)
