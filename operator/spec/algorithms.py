"""Translate a validated StudySpec into what the pure algorithms take.

The settings need no translation: the spec's settings blocks are the algorithms' own classes.
"""

from __future__ import annotations

from kubetune.algorithms.base import Objective, ResourceRange, Scheduler, SchedulerConfig
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, Param, SearchSpace
from kubetune.operator.spec.model import StudySpec


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


def scheduler_config(spec: StudySpec) -> SchedulerConfig:
    return SchedulerConfig(
        space=search_space(spec),
        objectives=tuple(Objective(o.metric, o.goal) for o in spec.objectives),  # type: ignore[arg-type]
        resource=ResourceRange(spec.resource.metric, spec.resource.min, spec.resource.max),
        seed=spec.algorithm.seed,
        settings=spec.algorithm.settings(),
    )


def make_scheduler(spec: StudySpec) -> Scheduler:
    from kubetune.algorithms.registry import make_scheduler as build

    return build(spec.algorithm.name, scheduler_config(spec))
