"""Search-space types the algorithms work on.

The operator's Study model converts its `searchSpace` into these; the algorithms never see YAML.
Every parameter maps to the unit interval so that samplers (random, Sobol, grid, models) share one
encoding, and PBT's perturbations can be clipped in the parameter's own scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Float:
    name: str
    low: float
    high: float
    log: bool = False

    def from_unit(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(min(max(value, self.low), self.high))

    def to_unit(self, value: Any) -> float:
        if self.high == self.low:
            return 0.5
        v = min(max(float(value), self.low), self.high)
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def clip(self, value: Any) -> float:
        return float(min(max(float(value), self.low), self.high))


@dataclass(frozen=True)
class Int:
    name: str
    low: int
    high: int
    log: bool = False

    def from_unit(self, u: float) -> int:
        """Map u to an integer with equal probability mass per integer (in the chosen scale)."""
        u = min(max(u, 0.0), 1.0)
        lo, hi = self.low - 0.5, self.high + 0.5
        if self.log:
            lo, hi = max(self.low - 0.5, self.low * 0.5), self.high + 0.5
            value = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            value = lo + u * (hi - lo)
        return int(min(max(round(value), self.low), self.high))

    def to_unit(self, value: Any) -> float:
        v = min(max(int(value), self.low), self.high)
        lo, hi = self.low - 0.5, self.high + 0.5
        if self.log:
            lo = max(self.low - 0.5, self.low * 0.5)
            return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)

    def clip(self, value: Any) -> int:
        return int(min(max(round(float(value)), self.low), self.high))


@dataclass(frozen=True)
class Categorical:
    name: str
    values: tuple[Any, ...]

    def from_unit(self, u: float) -> Any:
        index = min(int(min(max(u, 0.0), 1.0) * len(self.values)), len(self.values) - 1)
        return self.values[index]

    def to_unit(self, value: Any) -> float:
        index = self.values.index(value)
        return (index + 0.5) / len(self.values)

    def clip(self, value: Any) -> Any:
        return value if value in self.values else self.values[0]


@dataclass(frozen=True)
class Fixed:
    name: str
    value: Any


Param = Float | Int | Categorical | Fixed


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters; order fixes the unit-cube dimensions (and so determinism)."""

    params: tuple[Param, ...]

    @property
    def free(self) -> tuple[Float | Int | Categorical, ...]:
        """Parameters that are searched (all but Fixed), in declaration order."""
        return tuple(p for p in self.params if not isinstance(p, Fixed))

    @property
    def dim(self) -> int:
        return len(self.free)

    def from_unit(self, u: np.ndarray) -> dict[str, Any]:
        """Decode a point of [0, 1]^dim into a configuration (fixed parameters included)."""
        config: dict[str, Any] = {}
        free_iter = iter(np.asarray(u, dtype=float).tolist())
        for p in self.params:
            if isinstance(p, Fixed):
                config[p.name] = p.value
            else:
                config[p.name] = p.from_unit(next(free_iter))
        return config

    def to_unit(self, config: dict[str, Any]) -> np.ndarray:
        return np.array([p.to_unit(config[p.name]) for p in self.free], dtype=float)

    def clip(self, config: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.params:
            out[p.name] = p.value if isinstance(p, Fixed) else p.clip(config[p.name])
        return out
