"""Each algorithm's settings, defined once as a typed dataclass.

The Study model (`kubetune.operator.spec.model`) uses these classes as the types of its
`spec.algorithm.<name>` blocks: the CRD schema, the generated reference and the parser read the
descriptions and bounds declared here, and the parsed objects go to the schedulers as they are.
There is no second copy of a default or a bound that could drift, and no dict of camelCase names
between the spec and the algorithm.

The algorithms package must not import the operator, so a field's description and bounds are kept
as plain metadata under the key `setting`; the operator's schema module reads it. `check_settings`
applies the same bounds for callers of the pure API (tests, benchmarks, notebooks) whose objects
never went through the Study parser.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass
from typing import Any

SETTING_KEYS = (
    "enum",
    "minimum",
    "maximum",
    "exclusive_minimum",
    "exclusive_maximum",
    "min_items",
    "max_items",
)


def setting(
    description: str,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    **bounds: Any,
) -> Any:
    """A settings field with its description and bounds (the keys of SETTING_KEYS)."""
    unknown = sorted(set(bounds) - set(SETTING_KEYS))
    if unknown:
        raise TypeError(f"unknown setting bound(s) {unknown}")
    meta = {"setting": {"description": description, **bounds}}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(kw_only=True)
class GridSettings:
    """Settings of the `grid` algorithm."""

    grid_points: int = setting(
        "Points per float or int parameter (in its own scale); categoricals use all values.",
        default=5,
        minimum=2,
        maximum=1000,
    )


@dataclass(kw_only=True)
class AshaSettings:
    """Settings of `asha` and `moasha` (Li et al. 2020; Schmucker et al. 2021)."""

    eta: int = setting(
        "Reduction factor: rungs at min·eta^k; the top 1/eta of a rung is promoted.",
        default=3,
        minimum=2,
        maximum=100,
    )
    mode: str = setting(
        "promotion pauses trials at each rung and resumes the promoted ones from their "
        "checkpoint; stopping lets trials run on and stops those outside the top 1/eta.",
        default="promotion",
        enum=("promotion", "stopping"),
    )
    searcher: str = setting(
        "How new configurations are drawn: model (a TPE density-ratio model of the results so "
        "far at the highest well-populated rung, one proposal in ten random), random or sobol.",
        default="model",
        enum=("model", "random", "sobol"),
    )
    random_fraction: float | None = setting(
        "Share of the model searcher's proposals drawn at random (exploration); default 0.1.",
        default=None,
        minimum=0.0,
        maximum=1.0,
    )


@dataclass(kw_only=True)
class HyperbandSettings(AshaSettings):
    """Settings of `hyperband`: asynchronous Hyperband, several ASHA brackets (ASHA's settings
    plus the number of brackets)."""

    brackets: int | None = setting(
        "Number of brackets (the most aggressive first); default: all that fit between min "
        "and max.",
        default=None,
        minimum=1,
        maximum=20,
    )


@dataclass(kw_only=True)
class PbtSettings:
    """Settings of `pbt` and `mopbt` (Jaderberg et al. 2017; Dushatskiy et al. 2023)."""

    population_size: int = setting(
        "Members trained in parallel and compared with each other.",
        default=8,
        minimum=2,
        maximum=1000,
    )
    perturbation_interval: int | None = setting(
        "Resource between two exploit/explore steps of a member; default: a tenth of "
        "resource.max (at least 1).",
        default=None,
        minimum=1,
    )
    quantile: float = setting(
        "Fraction of the population in the bottom (copies) and top (donors) groups.",
        default=0.25,
        minimum=0.0,
        maximum=0.5,
        exclusive_minimum=True,
    )
    resample_probability: float = setting(
        "Probability that explore resamples a parameter from the search space instead of "
        "perturbing it.",
        default=0.25,
        minimum=0.0,
        maximum=1.0,
    )
    perturb_factors: list[float] = setting(
        "Factors a float or int parameter is multiplied by when perturbed (one drawn at random).",
        default_factory=lambda: [0.8, 1.2],
        minimum=0.0,
        exclusive_minimum=True,
        min_items=1,
    )
    ranking: str = setting(
        "Whom a member is compared with when it decides at a boundary: sameStep ranks it "
        "against every member's result at that same step (like with like, whatever the "
        "members' progress since); latest ranks all members by their latest results, so a "
        "member that decides late is judged against members trained for longer.",
        default="sameStep",
        enum=("sameStep", "latest"),
    )
    burn_in: int = setting(
        "No exploit before this resource (members only continue their own weights until "
        "then): early results rank configurations poorly.",
        default=0,
        minimum=0,
    )
    unperturbed: list[str] = setting(
        "Search-space parameters explore never changes: an exploiting member takes the donor's "
        "value and keeps it (neither perturbed nor resampled), e.g. architecture parameters "
        "whose checkpoint cannot change shape. Names must be in the search space.",
        default_factory=list,
    )
    perturbation_scale: str = setting(
        "How a perturbation moves a log-scaled float or int parameter: value multiplies the "
        "value by the drawn factor (as Ray Tune's PBT does, a small step on a wide log range); "
        "log moves it by (factor - 1) of its log range (factor 1.2: a fifth of the range up). "
        "Parameters on a linear scale are always multiplied.",
        default="log",
        enum=("value", "log"),
    )
    synchronous: bool = setting(
        "Generations: a member that reaches a boundary waits until every live member has "
        "reached it, then all decide against the same complete ranking (the PBT paper's "
        "synchronous variant). Off: each member decides as soon as a worker is free for it, "
        "so no worker idles at the barrier.",
        default=False,
    )
    explore: str = setting(
        "How an exploiting member picks its new configuration: perturb (random factors and "
        "resampling, the PBT paper's rule) or pb2 (a time-varying Gaussian-process bandit over "
        "(step, configuration) -> improvement per interval, GP-UCB as in Parker-Holder et al. "
        "2020; perturb until the model has enough data).",
        default="perturb",
        enum=("perturb", "pb2"),
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_number(algorithm: str, name: str, value: Any, bounds: dict[str, Any]) -> None:
    if not _is_number(value):
        raise ValueError(f"{algorithm}: setting {name!r} must be a finite number, got {value!r}")
    low, high = bounds.get("minimum"), bounds.get("maximum")
    if low is not None:
        if bounds.get("exclusive_minimum") and not value > low:
            raise ValueError(f"{algorithm}: setting {name!r} must be > {low}, got {value!r}")
        if value < low:
            raise ValueError(f"{algorithm}: setting {name!r} must be >= {low}, got {value!r}")
    if high is not None:
        if bounds.get("exclusive_maximum") and not value < high:
            raise ValueError(f"{algorithm}: setting {name!r} must be < {high}, got {value!r}")
        if value > high:
            raise ValueError(f"{algorithm}: setting {name!r} must be <= {high}, got {value!r}")


def check_settings(algorithm: str, settings: Any, expected: type) -> None:
    """Raise ValueError naming the setting if `settings` breaks a declared type or bound."""
    if not isinstance(settings, expected):
        raise ValueError(
            f"{algorithm}: settings must be a {expected.__name__}, got {type(settings).__name__}"
        )
    hints = {f.name: f.type for f in dataclasses.fields(expected)}
    for f in dataclasses.fields(expected):
        bounds = f.metadata.get("setting")
        if bounds is None:
            continue
        value = getattr(settings, f.name)
        if value is None and "None" in str(hints[f.name]):
            continue
        name = f.name
        kind = str(hints[f.name])
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(
                    f"{algorithm}: setting {name!r} must be true or false, got {value!r}"
                )
            continue
        if kind == "list[str]":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(
                    f"{algorithm}: setting {name!r} must be a list of names, got {value!r}"
                )
            continue
        if "enum" in bounds:
            if value not in bounds["enum"]:
                raise ValueError(
                    f"{algorithm}: setting {name!r} must be one of {list(bounds['enum'])}, "
                    f"got {value!r}"
                )
        elif isinstance(value, list | tuple):
            if len(value) < bounds.get("min_items", 0):
                raise ValueError(f"{algorithm}: setting {name!r} must not be empty")
            for item in value:
                _check_number(algorithm, name, item, bounds)
        else:
            if str(hints[f.name]).startswith("int") and (
                not _is_number(value) or int(value) != value
            ):
                raise ValueError(f"{algorithm}: setting {name!r} must be an integer, got {value!r}")
            _check_number(algorithm, name, value, bounds)


__all__ = [
    "AshaSettings",
    "GridSettings",
    "HyperbandSettings",
    "PbtSettings",
    "check_settings",
    "setting",
]
