"""Apply a trial's hyperparameters to an optimizer that may have been restored from a checkpoint.

A PBT exploit restores the donor's checkpoint, optimizer state included, so the optimizer comes
back with the *donor's* learning rate; the recipient's (perturbed) value must be written into the
param groups after the restore, or the exploit silently trains with the donor's settings. With a
learning-rate scheduler the group's ``lr`` is recomputed from the scheduler's ``base_lrs`` at its
next step, so the new value becomes the base and the schedule's current factor is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParamChange:
    """One value written into one optimizer param group (logged, so an exploit is visible)."""

    param: str  # the trial parameter (spec.searchSpace name)
    key: str  # the param-group key it sets
    group: int
    old: float
    new: float


def default_mapping(params: Mapping[str, Any]) -> dict[str, str]:
    """``lr`` -> ``lr`` when the trial has an ``lr`` parameter; nothing otherwise."""
    return {"lr": "lr"} if "lr" in params else {}


def check_mapping(mapping: Mapping[str, str], params: Mapping[str, Any], what: str) -> None:
    """Every mapped trial parameter must exist and be a number: a typo would train unchanged."""
    for name in mapping:
        if name not in params:
            raise ValueError(
                f"{what}: {name!r} is not a parameter of this trial "
                f"(its params: {', '.join(sorted(params)) or 'none'})"
            )
        try:
            float(params[name])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{what}: parameter {name!r} is {params[name]!r}, not a number an optimizer "
                "param group can take"
            ) from e


def unwrap(obj: Any) -> Any:
    """The torch object inside a wrapper (Accelerate's ``AcceleratedOptimizer`` keeps it in
    ``.optimizer``, ``AcceleratedScheduler`` in ``.scheduler``): a scheduler steps the inner
    optimizer, so ownership and param groups are compared there."""
    for _ in range(4):
        inner = getattr(obj, "optimizer", None) if hasattr(obj, "param_groups") else None
        inner = inner if inner is not None else getattr(obj, "scheduler", None)
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def apply_to_optimizer(
    optimizer: Any,
    params: Mapping[str, Any],
    mapping: Mapping[str, str],
    schedulers: Iterable[Any] = (),
    what: str = "optimizer_params",
) -> list[ParamChange]:
    """Write ``params[name]`` into every param group's ``mapping[name]``; return what changed.

    ``schedulers`` are the LR schedulers driving ``optimizer``: for ``lr`` their ``base_lrs``
    take the new value and the group's current ``lr`` keeps the schedule's factor
    (``lr / base_lr``), so a warm-up or decay continues where the checkpoint left it.
    """
    check_mapping(mapping, params, what)
    optimizer = unwrap(optimizer)
    owned = [
        s for s in map(unwrap, schedulers) if unwrap(getattr(s, "optimizer", None)) is optimizer
    ]
    changes: list[ParamChange] = []
    for name, key in mapping.items():
        new = float(params[name])
        for i, group in enumerate(optimizer.param_groups):
            if key not in group:
                raise ValueError(
                    f"{what}: the optimizer ({type(optimizer).__name__}) has no {key!r} in its "
                    f"param groups (keys: {', '.join(sorted(k for k in group if k != 'params'))})"
                )
            old = float(group[key])
            value = new
            if key == "lr":
                for sched in owned:
                    base = getattr(sched, "base_lrs", None)
                    if base is None or i >= len(base):
                        continue
                    if base[i]:
                        value = new * (old / float(base[i]))
                    base[i] = new
                if "initial_lr" in group:
                    group["initial_lr"] = new
            group[key] = value
            if old != value:
                changes.append(ParamChange(name, key, i, old, value))
    return changes


def describe(changes: Iterable[ParamChange]) -> str:
    """One line for the log: ``lr 0.1 -> 0.05 (group 0)``."""
    return ", ".join(f"{c.key} {c.old:.6g} -> {c.new:.6g} (group {c.group})" for c in changes)
