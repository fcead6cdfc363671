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
- `RankedPoints`: the same order for a set of labelled points that grows one at a time (MO-ASHA's
  rungs): fronts updated per point, each front's ε-net order cached until it changes.
- `crowding_distance`: NSGA-II's crowding distance (for callers that prefer it).
- `hypervolume`: exact; 2-D sweep, higher dimensions by slicing along the last objective.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
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


def _norm_params(points: np.ndarray) -> list[tuple[float, float] | None]:
    """Per objective, (lowest finite value, span of the finite values or 1), or None if none."""
    params: list[tuple[float, float] | None] = []
    for j in range(points.shape[1]):
        col = points[:, j]
        finite = np.isfinite(col)
        if finite.any():
            lo, hi = col[finite].min(), col[finite].max()
            params.append((float(lo), float(hi - lo) if hi > lo else 1.0))
        else:
            params.append(None)
    return params


def _apply_norm(points: np.ndarray, params: Sequence[tuple[float, float] | None]) -> np.ndarray:
    """Scale the finite values of each objective by (lo, span); +inf maps to 2, -inf to -1."""
    out = np.zeros_like(points)
    for j, param in enumerate(params):
        col = points[:, j]
        beyond = np.where(col > 0, 2.0, -1.0)
        if param is None:
            out[:, j] = beyond
        else:
            lo, span = param
            out[:, j] = np.where(np.isfinite(col), (col - lo) / span, beyond)
    return out


def _normalise(points: np.ndarray) -> np.ndarray:
    """Scale each objective to [0, 1] over its finite values; +inf maps to 2 (beyond all)."""
    return _apply_norm(points, _norm_params(points))


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
    taken = np.zeros(len(idx), dtype=bool)  # the rows in `chosen`
    taken[seed] = True
    dmin = ((pts - pts[seed]) ** 2).sum(axis=1)
    dmin[seed] = -1.0
    for _ in range(len(idx) - 1):
        nxt = int(np.argmax(dmin))  # first maximum: lowest index among ties
        chosen.append(nxt)
        taken[nxt] = True
        np.minimum(dmin, ((pts - pts[nxt]) ** 2).sum(axis=1), out=dmin)
        dmin[taken] = -1.0
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


class _Front:
    """One Pareto front of a `RankedPoints`, with its ε-net order cached."""

    __slots__ = ("labels", "marked", "order", "position", "version")

    def __init__(self) -> None:
        self.labels: list[int] = []
        self.marked = 0  # how many of its labels are marked
        self.order: list[int] | None = None  # ε-net order, valid for normalisation `version`
        self.position: dict[int, int] = {}
        self.version = -1

    def __len__(self) -> int:
        return len(self.labels)

    def dominates(self, point: np.ndarray) -> bool:
        """Whether a member dominates `point`."""
        raise NotImplementedError

    def insert(self, label: int, point: np.ndarray) -> list[int]:
        """Add a point no member dominates; remove and return the members it dominates."""
        raise NotImplementedError


class _Staircase(_Front):
    """A front of two-objective points, sorted by the first loss (so the second one descends)."""

    __slots__ = ("nys", "xs")

    def __init__(self) -> None:
        super().__init__()
        self.xs: list[float] = []  # first losses, non-decreasing
        self.nys: list[float] = []  # negated second losses, non-decreasing

    def dominates(self, point: np.ndarray) -> bool:
        x, y = float(point[0]), float(point[-1])
        # Of the members with a first loss <= x, the last one has the lowest second loss.
        i = bisect_right(self.xs, x)
        if i == 0:
            return False
        ny = self.nys[i - 1]
        return ny > -y or (ny == -y and self.xs[i - 1] < x)

    def insert(self, label: int, point: np.ndarray) -> list[int]:
        x, y = float(point[0]), float(point[-1])
        start = bisect_left(self.xs, x)  # members from here on have a first loss >= x ...
        stop = bisect_right(self.nys, -y)  # ... and those before here a second loss >= y
        same_x = bisect_right(self.xs, x)
        if start < same_x and self.nys[start] == -y:
            start = same_x  # copies of the point stay; a front has one distinct point per x
        removed = self.labels[start:stop]
        self.xs[start:stop] = [x]
        self.nys[start:stop] = [-y]
        self.labels[start:stop] = [label]
        return removed


class _Layer(_Front):
    """A front of points with any number of objectives, as a matrix."""

    __slots__ = ("points",)

    def __init__(self, objectives: int) -> None:
        super().__init__()
        self.points = np.empty((0, objectives))

    def dominates(self, point: np.ndarray) -> bool:
        pts = self.points
        return bool(np.any(np.all(pts <= point, axis=1) & np.any(pts < point, axis=1)))

    def insert(self, label: int, point: np.ndarray) -> list[int]:
        pts = self.points
        beaten = np.all(point <= pts, axis=1) & np.any(point < pts, axis=1)
        removed: list[int] = []
        if beaten.any():
            flags = beaten.tolist()
            removed = [lab for lab, out in zip(self.labels, flags, strict=True) if out]
            self.labels = [lab for lab, out in zip(self.labels, flags, strict=True) if not out]
            pts = pts[~beaten]
        self.points = np.vstack([pts, point])
        self.labels.append(label)
        return removed


class RankedPoints:
    """Labelled loss vectors in `rank_order`'s order, kept up to date one point at a time.

    The order is exactly `rank_order` of the matrix whose rows are the points sorted by label
    (read as labels instead of row numbers), but a new point costs a few bisections plus the
    points it pushes down, not a sort of everything:

    - Fronts are kept incrementally. A new point p goes to the first front with no member that
      dominates it (binary search: if front i has a member dominating p, so has every front
      before i). It dominates some members of that front, which move one front down, where they
      dominate some members, which move one front down, and so on. No point ever moves by more
      than one front or up, fronts before p's are untouched, and a front is never emptied.
      Two objectives (and one) use sorted "staircases" and bisection, more use matrices.
    - `rank_order` orders a front by an ε-net in coordinates normalised over all points, so a
      front's order depends only on its own members (their labels and losses) and on the
      per-objective lowest and highest finite losses. Each front caches its order, dropped
      when its members change or when a new point widens a finite range, and computed only
      when a question needs it: whether a point is in the top k asks only its own front, and
      only if that front straddles position k; the first marked point in the top k asks only
      fronts that hold a marked point.

    Setting a label that is already present (an overwrite) rebuilds the fronts from scratch.
    """

    def __init__(self) -> None:
        self._points: dict[int, np.ndarray] = {}  # label -> losses, NaN read as +inf
        self._objectives = 0
        self._fronts: list[_Front] = []
        self._front_of: dict[int, int] = {}
        self._marked: set[int] = set()
        self._lo: list[float] = []  # per objective, the lowest and highest finite loss
        self._hi: list[float] = []
        self._version = 0  # bumped whenever _lo or _hi changes

    def __len__(self) -> int:
        return len(self._points)

    def __contains__(self, label: int) -> bool:
        return label in self._points

    def add(self, label: int, losses: ArrayLike) -> None:
        """Add a point, or replace the losses of a label already present."""
        point = np.asarray(losses, dtype=float).reshape(-1)
        point = np.where(np.isnan(point), np.inf, point)
        if len(point) == 0:
            raise ValueError("a point needs at least one loss")
        if not self._points:
            self._objectives = len(point)
            self._lo = [np.inf] * len(point)
            self._hi = [-np.inf] * len(point)
        elif len(point) != self._objectives:
            raise ValueError(f"expected {self._objectives} losses, got {len(point)}")
        replaced = label in self._points
        self._points[label] = point
        if replaced:
            self._rebuild()
            return
        self._widen(point)
        self._place(label)

    def mark(self, label: int, flag: bool) -> None:
        """Mark or unmark a label (present or not) for `first_marked`."""
        if flag == (label in self._marked):
            return
        if flag:
            self._marked.add(label)
        else:
            self._marked.discard(label)
        front = self._front_of.get(label)
        if front is not None:
            self._fronts[front].marked += 1 if flag else -1

    def order(self, limit: int | None = None) -> list[int]:
        """The labels in `rank_order`'s order; with `limit`, as `rank_order(..., limit)` gives it
        (exact for the first `limit` entries, later fronts by label)."""
        out: list[int] = []
        for front in self._fronts:
            if limit is not None and len(out) >= limit:
                out.extend(sorted(front.labels))
            else:
                out.extend(self._front_order(front))
        return out

    def position(self, label: int) -> int:
        """0-based position of a label in the order."""
        f = self._front_of[label]
        front = self._fronts[f]
        self._front_order(front)
        return self._start(f) + front.position[label]

    def in_top(self, label: int, k: int) -> bool:
        """Whether the label is among the first k of the order."""
        f = self._front_of[label]
        start = self._start(f)
        front = self._fronts[f]
        if start + len(front) <= k or start >= k:
            return start < k
        self._front_order(front)
        return start + front.position[label] < k

    def first_marked(self, k: int) -> int | None:
        """The first marked label among the first k of the order, or None."""
        if not self._marked:
            return None
        start = 0
        for front in self._fronts:
            if start >= k:
                break
            if front.marked == 1 and start + len(front) <= k:
                # Wholly in the top k with one marked member: that one, whatever the order.
                return next(label for label in front.labels if label in self._marked)
            if front.marked:
                for label in self._front_order(front)[: k - start]:
                    if label in self._marked:
                        return label
            start += len(front)
        return None

    # -- internals ----------------------------------------------------------------------------
    def _start(self, f: int) -> int:
        return sum(len(front) for front in self._fronts[:f])

    def _new_front(self) -> _Front:
        return _Staircase() if self._objectives <= 2 else _Layer(self._objectives)

    def _widen(self, point: np.ndarray) -> None:
        for j, value in enumerate(point.tolist()):
            if not math.isfinite(value):
                continue
            if value < self._lo[j]:
                self._lo[j] = value
                self._version += 1
            if value > self._hi[j]:
                self._hi[j] = value
                self._version += 1

    def _place(self, label: int) -> None:
        fronts = self._fronts
        point = self._points[label]
        low, high = 0, len(fronts)
        while low < high:
            mid = (low + high) // 2
            if fronts[mid].dominates(point):
                low = mid + 1
            else:
                high = mid
        f = low
        moving = [label]
        while moving:
            if f == len(fronts):
                fronts.append(self._new_front())
            front = fronts[f]
            front.order = None
            pushed: list[int] = []
            for lab in moving:
                pushed.extend(front.insert(lab, self._points[lab]))
                if lab in self._marked:
                    old = self._front_of.get(lab)
                    if old is not None:
                        fronts[old].marked -= 1
                    front.marked += 1
                self._front_of[lab] = f
            moving = pushed
            f += 1

    def _rebuild(self) -> None:
        labels = sorted(self._points)
        matrix = np.vstack([self._points[lab] for lab in labels])
        self._fronts = []
        self._front_of = {}
        for f, rows in enumerate(non_dominated_sort(matrix)):
            front = self._new_front()
            for row in rows:
                lab = labels[row]
                front.insert(lab, self._points[lab])  # no member dominates another: no removal
                self._front_of[lab] = f
                front.marked += lab in self._marked
            self._fronts.append(front)
        self._lo = [np.inf] * self._objectives
        self._hi = [-np.inf] * self._objectives
        for point in self._points.values():
            self._widen(point)
        self._version += 1

    def _norm(self) -> list[tuple[float, float] | None]:
        return [
            (lo, hi - lo if hi > lo else 1.0) if lo <= hi else None
            for lo, hi in zip(self._lo, self._hi, strict=True)
        ]

    def _front_order(self, front: _Front) -> list[int]:
        if front.order is None or front.version != self._version:
            labels = sorted(front.labels)
            if len(labels) > 1:
                raw = np.vstack([self._points[lab] for lab in labels])
                rows = _eps_net(_apply_norm(raw, self._norm()), raw, np.arange(len(labels)))
                labels = [labels[r] for r in rows]
            front.order = labels
            front.position = {lab: p for p, lab in enumerate(labels)}
            front.version = self._version
        return front.order


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
    "RankedPoints",
    "crowding_distance",
    "dominates",
    "eps_net_order",
    "hypervolume",
    "non_dominated_sort",
    "rank_order",
]
