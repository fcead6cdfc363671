"""Multi-objective math on loss matrices (rows = points, columns = objectives, lower is better).

Written with numpy alone: no well-kept hypervolume / Pareto library is installed in this project
(pymoo, moocore, pygmo, botorch are absent), and the pieces needed are small enough to own and
test exhaustively. NaN losses are treated as +inf everywhere (a diverged trial ranks worst).

- `non_dominated_sort`: Pareto fronts. Two objectives use the O(n log n) sweep (sort
  lexicographically, each point goes to the first front whose smallest second loss is above its
  own); more objectives use a dominance matrix (n <= 2048) or front peeling.
- `eps_net_order`: greedy farthest-point ("ε-net") ordering in normalised objective space, as
  MO-ASHA's EpsNet and MO-PBT's scattered-subset selection: each next point is the one farthest
  from all points already chosen, so any prefix is spread over the front.
- `rank_order`: fronts first, ε-net order inside each front: a total, deterministic order.
- `crowding_distance`: NSGA-II's crowding distance (for callers that prefer it).
- `hypervolume`: exact; 2-D sweep, higher dimensions by slicing along the last objective.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

_MATRIX_LIMIT = 2048


def _as_losses(losses: ArrayLike) -> np.ndarray:
    arr = np.asarray(losses, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"losses must be a 2-D array (points x objectives), got shape {arr.shape}")
    return np.where(np.isnan(arr), np.inf, arr)


def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether loss vector a Pareto-dominates b (no worse everywhere, better somewhere)."""
    x = _as_losses(np.asarray(a, dtype=float).reshape(1, -1))[0]
    y = _as_losses(np.asarray(b, dtype=float).reshape(1, -1))[0]
    return bool(np.all(x <= y) and np.any(x < y))


def _sort_2d(points: np.ndarray) -> list[list[int]]:
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    # np.unique sorts rows lexicographically: a point can only be dominated by earlier rows.
    front_of_unique = np.empty(len(unique), dtype=int)
    min_second: list[float] = []  # per front, the smallest second loss; non-decreasing
    for u, second in enumerate(unique[:, 1].tolist()):
        k = bisect_right(min_second, second)
        if k == len(min_second):
            min_second.append(second)
        else:
            min_second[k] = second
        front_of_unique[u] = k
    front_of = front_of_unique[inverse]
    return _group(front_of, len(min_second))


def _group(front_of: np.ndarray, count: int) -> list[list[int]]:
    order = np.argsort(front_of, kind="stable")
    bounds = np.searchsorted(front_of[order], np.arange(count + 1))
    return [order[bounds[k] : bounds[k + 1]].tolist() for k in range(count)]


def _sort_matrix(points: np.ndarray) -> list[list[int]]:
    le = np.all(points[:, None, :] <= points[None, :, :], axis=2)
    lt = np.any(points[:, None, :] < points[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)
    remaining = np.ones(len(points), dtype=bool)
    fronts: list[list[int]] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (count == 0))
        fronts.append(front.tolist())
        remaining[front] = False
        count = count - dom[front].sum(axis=0)
    return fronts


def _sort_peel(points: np.ndarray) -> list[list[int]]:
    order = np.lexsort(points.T[::-1])
    remaining = order.tolist()
    fronts: list[list[int]] = []
    while remaining:
        front: list[int] = []
        rest: list[int] = []
        for i in remaining:
            p = points[i]
            if front:
                f = points[front]
                if np.any(np.all(f <= p, axis=1) & np.any(f < p, axis=1)):
                    rest.append(i)
                    continue
            front.append(i)
        fronts.append(sorted(front))
        remaining = rest
    return fronts


def non_dominated_sort(losses: ArrayLike) -> list[list[int]]:
    """Pareto fronts of a loss matrix, best front first; indices ascending inside each front.

    Identical points share a front (neither dominates the other).
    """
    points = _as_losses(losses)
    n, m = points.shape
    if n == 0:
        return []
    if m == 1:
        points = np.hstack([points, points])
        m = 2
    if m == 2:
        return _sort_2d(points)
    if n <= _MATRIX_LIMIT:
        return _sort_matrix(points)
    return _sort_peel(points)


def _normalise(points: np.ndarray) -> np.ndarray:
    """Scale each objective to [0, 1] over its finite values; +inf maps to 2 (beyond all)."""
    out = np.zeros_like(points)
    for j in range(points.shape[1]):
        col = points[:, j]
        finite = np.isfinite(col)
        if finite.any():
            lo, hi = col[finite].min(), col[finite].max()
            span = hi - lo if hi > lo else 1.0
            out[:, j] = np.where(finite, (col - lo) / span, np.where(col > 0, 2.0, -1.0))
        else:
            out[:, j] = np.where(col > 0, 2.0, -1.0)
    return out


def _eps_net(normed: np.ndarray, raw: np.ndarray, idx: np.ndarray) -> list[int]:
    """Greedy farthest-point order of the rows `idx` (normalised coordinates given)."""
    if len(idx) <= 1:
        return idx.tolist()
    pts = normed[idx]
    vals = raw[idx]
    seed = int(np.lexsort(np.vstack([idx, vals.T[::-1]]))[0])
    if len(idx) == 2:
        return [int(idx[seed]), int(idx[1 - seed])]
    chosen = [seed]
    dmin = ((pts - pts[seed]) ** 2).sum(axis=1)
    dmin[seed] = -1.0
    for _ in range(len(idx) - 1):
        nxt = int(np.argmax(dmin))  # first maximum: lowest index among ties
        chosen.append(nxt)
        np.minimum(dmin, ((pts - pts[nxt]) ** 2).sum(axis=1), out=dmin)
        dmin[chosen] = -1.0
    return idx[chosen].tolist()


def eps_net_order(losses: ArrayLike, subset: Sequence[int] | None = None) -> list[int]:
    """Greedy farthest-point order of `subset` (default: all points), normalised over all points.

    The seed is the point with the lowest first loss (ties: lexicographically on the other losses,
    then lowest index) — an extreme point of the front, as in MO-ASHA's EpsNet. Each next point is
    the one whose distance to the already chosen set is largest; ties go to the lowest index.
    """
    points = _as_losses(losses)
    idx = np.arange(len(points)) if subset is None else np.asarray(sorted(subset), dtype=int)
    if len(idx) == 0:
        return []
    return _eps_net(_normalise(points), points, idx)


def rank_order(losses: ArrayLike, limit: int | None = None) -> list[int]:
    """A total order of the points, best first: Pareto fronts in turn, each in ε-net order.

    A point that dominates every other point is alone in front 0 and so always first.
    With `limit`, only the first `limit` entries are guaranteed to be those of the full order
    (fronts after the one that reaches `limit` are appended unordered, by index) — enough for
    "is it in the top k" questions at a fraction of the cost.
    """
    points = _as_losses(losses)
    if len(points) == 0:
        return []
    normed = _normalise(points)
    order: list[int] = []
    for front in non_dominated_sort(points):
        if limit is not None and len(order) >= limit:
            order.extend(front)
        else:
            order.extend(_eps_net(normed, points, np.asarray(front, dtype=int)))
    return order


def crowding_distance(losses: ArrayLike) -> np.ndarray:
    """NSGA-II crowding distance of each point within the given set (boundary points: inf)."""
    points = _as_losses(losses)
    n, m = points.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(points[:, j], kind="stable")
        col = points[order, j]
        dist[order[0]] = dist[order[-1]] = np.inf
        span = col[-1] - col[0]
        if not np.isfinite(span) or span <= 0:
            continue
        dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def _hv2(points: np.ndarray, ref: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    order = np.lexsort((points[:, 1], points[:, 0]))
    pts = points[order]
    best_second = np.minimum.accumulate(pts[:, 1])
    previous = np.concatenate([[ref[1]], best_second[:-1]])
    gain = np.clip(previous - pts[:, 1], 0.0, None)
    return float(np.sum((ref[0] - pts[:, 0]) * gain))


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    m = points.shape[1]
    if len(points) == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - points[:, 0].min())
    if m == 2:
        return _hv2(points, ref)
    # Slice along the last objective: between consecutive distinct values the cross-section is
    # the (m-1)-dimensional hypervolume of the points at or below the slice.
    last = points[:, -1]
    levels = np.unique(last)
    bounds = np.concatenate([levels, [ref[-1]]])
    total = 0.0
    for k, level in enumerate(levels):
        thickness = bounds[k + 1] - level
        if thickness <= 0:
            continue
        total += _hv(points[last <= level, :-1], ref[:-1]) * thickness
    return float(total)


def hypervolume(losses: ArrayLike, ref: ArrayLike) -> float:
    """Exact hypervolume dominated by the points and bounded by the reference point `ref`.

    Only points strictly better than `ref` in every objective contribute; NaN/inf points none.
    Exact for any number of objectives (cost grows quickly beyond 3; intended for 2 and 3).
    """
    points = _as_losses(losses)
    r = np.asarray(ref, dtype=float).reshape(-1)
    if points.size == 0:
        return 0.0
    if points.shape[1] != len(r):
        raise ValueError(f"reference point has {len(r)} objectives, losses have {points.shape[1]}")
    keep = np.all(np.isfinite(points), axis=1) & np.all(points < r, axis=1)
    pts = points[keep]
    if len(pts) == 0:
        return 0.0
    # Only the non-dominated points matter; dropping the rest keeps the slicing cheap.
    pts = pts[non_dominated_sort(pts)[0]]
    return _hv(pts, r)


__all__ = [
    "crowding_distance",
    "dominates",
    "eps_net_order",
    "hypervolume",
    "non_dominated_sort",
    "rank_order",
]
