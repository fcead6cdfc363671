"""Translate a validated StudySpec into what the pure algorithms take."""

from __future__ import annotations

import dataclasses
from typing import Any

from kubetune.algorithms.base import Objective, ResourceRange, Scheduler, SchedulerConfig
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, Param, SearchSpace
from kubetune.operator.spec.model import StudySpec
from kubetune.operator.spec.schema import camel


def search_space(spec: StudySpec) -> SearchSpace:
    params: list[Param] = []
    for name, p in spec.search_space.items():
        if p.type == "float":
            assert p.low is not None and p.high is not None
            params.append(Float(name, float(p.low), float(p.high), p.log))
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            params.append(Int(name, int(p.low), int(p.high), p.log))
        elif p.type == "categorical":
            params.append(Categorical(name, tuple(p.values or ())))
        else:
            params.append(Fixed(name, p.value))
    return SearchSpace(tuple(params))


def settings_dict(spec: StudySpec) -> dict[str, Any]:
    """The chosen algorithm's settings as the camelCase mapping the algorithms read."""
    settings = spec.algorithm.settings()
    if settings is None:
        return {}
    return {camel(k): v for k, v in dataclasses.asdict(settings).items() if v is not None}


def scheduler_config(spec: StudySpec) -> SchedulerConfig:
    return SchedulerConfig(
        space=search_space(spec),
        objectives=tuple(Objective(o.metric, o.goal) for o in spec.objectives),  # type: ignore[arg-type]
        resource=ResourceRange(spec.resource.metric, spec.resource.min, spec.resource.max),
        seed=spec.algorithm.seed,
        settings=settings_dict(spec),
    )


def make_scheduler(spec: StudySpec) -> Scheduler:
    from kubetune.algorithms.registry import make_scheduler as build

    return build(spec.algorithm.name, scheduler_config(spec))
