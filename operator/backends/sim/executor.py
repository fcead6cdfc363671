"""The simulated executor: the real Controller and algorithms on a virtual clock.

A discrete-event simulation of N workers (GPUs). The controller launches run segments exactly as
it launches Jobs or processes; here a segment is a plan computed from a benchmark (a learning
curve with a state, see sim_benchmarks.py):

    launch ─ startup ─ [restore] ─ epoch ─ [save] ─ epoch ─ ... ─ epoch stop_at ─ save ─ exit

- startup: pod scheduling, image pull, process start (per new process, `SimCosts.startup`): a
  segment continued in place (`extend`) or run in a warm slot (`assign`) does not pay it;
- restore: loading a checkpoint, when the segment starts from one (`SimCosts.restore`);
- epochs: the benchmark's seconds per resource unit (lcbench: the surrogate's own `time`);
- save: a checkpoint (`SimCosts.save`) at every milestone the controller asked for (rungs, PBT
  boundaries, stop_at) and, with checkpoint-resume, every `checkpoint_every` units in between.
  Checkpoints are real `CheckpointStore` objects (an indexed in-memory fsspec filesystem,
  `simmem://`), holding the benchmark state: the controller's resume, promotion and PBT exploit
  (a donor's checkpoint copied) all go through them, and the next segment reads the state back.
- results: a milestone's metrics become visible when its checkpoint is committed; `poll` hands
  them over exactly (`SegmentStatus.results`), and `changed()` names the trials with news, so the
  controller's pass costs O(news), not O(workers).

Preemptions: each worker has its own seeded Poisson process (`rate` per worker-hour; or a trace
of (seconds, worker) pairs). A preemption that hits a busy worker ends its segment with
SegmentStatus("exited", preempted=True, exit_code=143); the controller resumes it from the last
committed checkpoint. Preemptions of idle workers pass unnoticed (the node is replaced). Each
worker's preemption times are fixed by the seed whatever the algorithm does, so two runs that
differ in one setting (e.g. checkpoint-resume vs restart) see the same preemptions.

Restart-from-scratch (`checkpoint_resume=False`) — what makes the comparison fair. Both modes
save the checkpoints the algorithms need (at milestones: ASHA's pause/promote and PBT's
exploit read them), so both run the same algorithm with the same decisions available. Only
recovery differs: with resume, periodic checkpoints are saved (and their cost paid) and a
preempted segment restarts from the last one; without, no periodic checkpoints are saved and a
preempted segment reruns from where the segment began (its restore point, or epoch 0 for a new
trial), as a trial without preemption-safe checkpointing would. The controller code is the same in
both modes; the executor only ignores the mid-segment checkpoint when re-running a segment.

GPU-time accounting (per worker-second, exact): busy = useful + lost, where
useful = training compute whose result is kept, and lost = startup + restore + checkpoint saves +
compute lost to preemptions (computed after the last checkpoint the rerun restores from) + stop
latency (compute after a milestone until the controller's stop arrived; non-zero only with a
reconcile interval).
"""

from __future__ import annotations

import csv
import heapq
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kubetune.operator.backends.sim.benchmarks import Benchmark, State
from kubetune.operator.backends.sim.storage import register as register_simmem
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.state import TrialState
from kubetune.trial.checkpoint import CheckpointStore, parse_checkpoint_name
from kubetune.trial.env import TrialEnv

EXIT_SIGTERM = 143
LOST_KINDS = ("startup", "restore", "save", "preempted", "stopLatency", "hold", "cutAtLimit")


@dataclass
class SimCosts:
    startup: float = 60.0  # seconds from launch to the first training step
    restore: float = 10.0  # loading a checkpoint
    save: float = 5.0  # committing a checkpoint
    checkpoint_every: int = 1  # resource units between periodic checkpoints; 0: milestones only
    # The SDK's background saves: a periodic checkpoint costs training only its snapshot
    # (serialising the state to memory); the upload (`save` seconds) overlaps the next steps,
    # one in flight. A decision point's checkpoint is committed before training goes on.
    background_saves: bool = True
    snapshot: float = 1.0

    def to_json(self) -> dict[str, float]:
        return {
            "startupSeconds": self.startup,
            "restoreSeconds": self.restore,
            "saveSeconds": self.save,
            "checkpointEvery": self.checkpoint_every,
            "backgroundSaves": self.background_saves,
            "snapshotSeconds": self.snapshot,
        }


@dataclass
class _Event:
    time: float
    epoch: int
    metrics: dict[str, float] | None  # a milestone's results
    state: State | None  # a checkpoint's content


@dataclass
class _Origin:
    start: int
    state: State
    restore: bool


@dataclass
class _Segment:
    sid: int
    env: TrialEnv
    origin: _Origin
    launched: float
    worker: int = -1
    started: float = math.nan
    gen: int = 0
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    next_event: int = 0
    last_commit: float = math.nan  # time of the last committed checkpoint (nan: none yet)
    results: dict[int, dict[str, float]] = field(default_factory=dict)
    status: SegmentStatus | None = None  # set once it has ended
    # Continue in place: the step the process holds at (its checkpoint committed), the
    # benchmark state there, and since when it holds its worker waiting for the decision.
    held_at: int | None = None
    held_state: State | None = None
    held_since: float = math.nan
    # Every epoch this segment trains: (time its compute ends, epoch, metrics).
    trained: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)

    @property
    def trial(self) -> str:
        return self.env.trial_id


class _Preemptions:
    """Per-worker preemption times: a seeded Poisson process, or a trace."""

    def __init__(
        self, workers: int, rate_per_hour: float, seed: int, trace: dict[int, list[float]] | None
    ) -> None:
        self.rate = rate_per_hour / 3600.0
        self.seed = seed
        self.trace = trace
        self.next: list[float] = [math.inf] * workers
        self.rngs: dict[int, np.random.Generator] = {}
        self.pos = [0] * workers
        for w in range(workers):
            self.next[w] = self._draw(w, 0.0)

    def _draw(self, worker: int, after: float) -> float:
        if self.trace is not None:
            times = self.trace.get(worker, [])
            while self.pos[worker] < len(times) and times[self.pos[worker]] <= after:
                self.pos[worker] += 1
            return times[self.pos[worker]] if self.pos[worker] < len(times) else math.inf
        if self.rate <= 0:
            return math.inf
        rng = self.rngs.get(worker)
        if rng is None:
            rng = self.rngs[worker] = np.random.default_rng([self.seed, 0x5EED, worker])
        return after + float(rng.exponential(1.0 / self.rate))

    def upcoming(self, worker: int, now: float) -> float:
        """The worker's next preemption at or after `now` (earlier ones hit an idle worker)."""
        while self.next[worker] < now:
            self.next[worker] = self._draw(worker, self.next[worker])
        return self.next[worker]

    def consume(self, worker: int) -> None:
        self.next[worker] = self._draw(worker, self.next[worker])


def read_trace(path: str | Path) -> dict[int, list[float]]:
    """A preemption trace: CSV rows `seconds,worker` (a header row is allowed)."""
    out: dict[int, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                t, w = float(row[0]), int(row[1])
            except (ValueError, IndexError):
                continue  # header
            out.setdefault(w, []).append(t)
    return {w: sorted(ts) for w, ts in out.items()}


class SimulatedExecutor:
    """The Executor protocol on a virtual clock (see the module docstring)."""

    def __init__(
        self,
        benchmark: Benchmark,
        workers: int,
        *,
        seed: int = 0,
        costs: SimCosts | None = None,
        preemption_rate: float = 0.0,
        preemption_trace: dict[int, list[float]] | None = None,
        checkpoint_resume: bool = True,
        target_resource: int | None = None,
    ) -> None:
        register_simmem()
        self.bench = benchmark
        self.workers = workers
        self.costs = costs or SimCosts()
        self.resume = checkpoint_resume
        self.preemptions = _Preemptions(workers, preemption_rate, seed, preemption_trace)
        self.now = 0.0
        self.target_resource = target_resource
        self.heap: list[tuple[float, int, int, str, int]] = []
        self.seq = 0
        self.segments: dict[int, _Segment] = {}
        self.next_sid = 0
        self.free: list[int] = list(range(workers))
        self.queue: deque[int] = deque()
        self._changed: set[str] = set()
        # trial -> (its latest segment, that segment's exact milestone results): the metric source
        self.results_of: dict[str, tuple[int, dict[int, dict[str, float]]]] = {}
        self.origins: dict[tuple[str, int], _Origin] = {}
        self.periodic: dict[str, str] = {}  # trial -> its superseded-able periodic checkpoint URL
        self.running = 0
        self.busy_integral = 0.0
        self.last_time = 0.0
        self.acct = {"busy": 0.0, "useful": 0.0, **{k: 0.0 for k in LOST_KINDS}}
        self.counts = {
            "segments": 0,
            "continued": 0,
            "warmSlot": 0,
            "preemptions": 0,
            "checkpoints": 0,
            "results": 0,
        }
        self.events_processed = 0
        # (virtual seconds, GPU-seconds busy so far, trial, metrics) of every result at the
        # target resource: the incumbent trajectory.
        self.finals: list[tuple[float, float, str, dict[str, float]]] = []
        # Every trained epoch per trial, for trials.jsonl: segment, epoch, simulated seconds at
        # its end, its metrics, and whether a preemption or stop threw it away.
        self.epochs: dict[str, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ Executor protocol

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        key = (env.trial_id, env.segment)
        origin = self.origins.get(key) if not self.resume else None
        if origin is None:
            origin = self._origin(env)
            if not self.resume:
                self.origins[key] = origin
        sid = self.next_sid
        self.next_sid += 1
        seg = _Segment(sid=sid, env=env, origin=origin, launched=self.now)
        self.segments[sid] = seg
        self.results_of[env.trial_id] = (env.segment, seg.results)
        self.counts["segments"] += 1
        if self.free:
            self._start(seg, heapq.heappop(self.free))
        else:
            self.queue.append(sid)
        return {"sim": sid, "trial": env.trial_id, "segment": env.segment}

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        seg = self.segments.get(int(handle["sim"]))
        if seg is None:
            return SegmentStatus("lost")
        if seg.status is not None:
            del self.segments[seg.sid]
            return seg.status
        held = seg.held_at is not None
        return SegmentStatus(
            "running", held_at=seg.held_at, reusable=held and seg.env.slot_seconds > 0
        )

    def extend(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        """The held segment's worker trains on from the held state: no start-up, no restore."""
        seg = self.segments.get(int(handle["sim"]))
        if seg is None or seg.status is not None or seg.held_at is None:
            return None
        assert seg.held_state is not None
        self._end_hold(seg)
        seg.gen += 1
        del self.segments[seg.sid]
        self._integrate(self.now)
        self.running -= 1  # _start counts the worker again
        sid = self.next_sid
        self.next_sid += 1
        origin = _Origin(seg.held_at, seg.held_state, False)
        nxt = _Segment(sid=sid, env=env, origin=origin, launched=self.now)
        self.segments[sid] = nxt
        self.results_of[env.trial_id] = (env.segment, nxt.results)
        self.counts["segments"] += 1
        self.counts["continued"] += 1
        self._start(nxt, seg.worker, startup=False)
        return {"sim": sid, "trial": env.trial_id, "segment": env.segment}

    def assign(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        """A warm slot: the held process of `handle` runs `env` (any trial) next, on the same
        worker with no start-up; `env` restores its checkpoint (paying `restore`) if it has one."""
        seg = self.segments.get(int(handle["sim"]))
        if seg is None or seg.status is not None or seg.held_at is None:
            if seg is not None and seg.status is not None:
                del self.segments[seg.sid]  # it gave up waiting: nobody polls it any more
            return None
        self._end_hold(seg)
        seg.gen += 1
        del self.segments[seg.sid]
        self._integrate(self.now)
        self.running -= 1  # _start counts the worker again
        origin = self._origin(env)
        if not self.resume:
            self.origins[(env.trial_id, env.segment)] = origin
        sid = self.next_sid
        self.next_sid += 1
        nxt = _Segment(sid=sid, env=env, origin=origin, launched=self.now)
        self.segments[sid] = nxt
        self.results_of[env.trial_id] = (env.segment, nxt.results)
        self.counts["segments"] += 1
        self.counts["warmSlot"] += 1
        self._start(nxt, seg.worker, startup=False)
        return {"sim": sid, "trial": env.trial_id, "segment": env.segment}

    def release(self, handle: dict[str, Any]) -> None:
        seg = self.segments.get(int(handle["sim"]))
        if seg is not None and seg.status is not None and seg.held_at is not None:
            del self.segments[seg.sid]  # a slot that gave up waiting, released by the controller
            return
        if seg is None or seg.status is not None or seg.held_at is None:
            return
        self._end_hold(seg)
        self._exit(seg)
        del self.segments[seg.sid]  # the controller forgot the handle: nobody polls it

    def _end_hold(self, seg: _Segment) -> None:
        held = self.now - seg.held_since
        self.acct["busy"] += held
        self.acct["hold"] += held

    def stop(self, handle: dict[str, Any]) -> None:
        seg = self.segments.get(int(handle["sim"]))
        if seg is None or seg.status is not None:
            return
        if seg.held_at is not None:  # SIGTERM while holding: it exits at once
            self._end_hold(seg)
            seg.status = SegmentStatus("exited", exit_code=EXIT_SIGTERM)
            self._changed.add(seg.trial)
            self._release(seg)
            return
        if seg.worker < 0:
            self.queue.remove(seg.sid)
            seg.status = SegmentStatus("exited", exit_code=EXIT_SIGTERM)
            self._changed.add(seg.trial)
            return
        self._cut(seg, self.now, preempted=False)
        self.origins.pop((seg.trial, seg.env.segment), None)
        seg.status = SegmentStatus("exited", exit_code=EXIT_SIGTERM)
        self._changed.add(seg.trial)
        self._release(seg)

    def close(self) -> None:
        pass

    def changed(self) -> set[str] | None:
        out, self._changed = self._changed, set()
        return out

    # ------------------------------------------------------------------ MetricSource protocol

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        """The exact values the benchmark produced: nothing is scraped or lost in simulation."""
        segment, results = self.results_of.get(t.trial_id, (-1, {}))
        if segment != t.segment_index:
            return Observation()
        return Observation(milestones={k: dict(v) for k, v in results.items()})

    # ------------------------------------------------------------------ the clock

    def clock(self) -> float:
        return self.now

    def gpu_seconds_busy(self) -> float:
        """Worker-seconds allocated so far (training, costs, holds and idle slots)."""
        self._integrate(self.now)
        return self.busy_integral

    def has_news(self) -> bool:
        return bool(self._changed)

    def advance(self, interval: float = 0.0, limit: float = math.inf) -> bool:
        """Process the next event(s) and move the clock; False when nothing is scheduled before
        `limit` (simulated seconds; the clock then stops at `limit` if events remain).

        interval > 0: the controller reconciles on a period; every event up to the next tick is
        processed and the clock stops at the tick (decisions lag results as in a real operator).
        """
        while self.heap:
            t = self.heap[0][0]
            if t > limit:
                self._integrate(limit)
                self.now = max(self.now, limit)
                return False
            until = t if interval <= 0 else math.ceil(t / interval - 1e-12) * interval
            until = min(until, limit)
            processed = False
            while self.heap and self.heap[0][0] <= until:
                t, _, sid, kind, gen = heapq.heappop(self.heap)
                seg = self.segments.get(sid)
                if seg is None or seg.status is not None or seg.gen != gen:
                    continue  # stale (the segment was stopped or preempted)
                self._integrate(t)
                self.now = t
                self.events_processed += 1
                processed = True
                if kind == "preempt":
                    self._preempt(seg, t)
                elif kind == "expire":  # no decision within hold_seconds: the process exits
                    self._end_hold(seg)
                    self._exit(seg)
                else:
                    self._event(seg)
            self._integrate(until)
            self.now = until
            if processed:
                return True
        return False

    def _integrate(self, t: float) -> None:
        if t > self.last_time:
            self.busy_integral += self.running * (t - self.last_time)
            self.last_time = t

    def _push(self, t: float, seg: _Segment, kind: str) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, seg.sid, kind, seg.gen))

    # ------------------------------------------------------------------ segments

    def _origin(self, env: TrialEnv) -> _Origin:
        if not env.restore_from:
            return _Origin(0, self.bench.initial(env.params), False)
        store = CheckpointStore.for_checkpoint(env.restore_from)
        info = store.load(env.restore_from, verify=False)
        state = json.loads(store.read(info)["state"])
        pos = parse_checkpoint_name(env.restore_from)
        start = pos[1] if pos is not None else int(state["epoch"])
        return _Origin(start, self.bench.restore(state, env.params), True)

    def _start(self, seg: _Segment, worker: int, startup: bool = True) -> None:
        env, origin, costs = seg.env, seg.origin, self.costs
        self._integrate(self.now)
        seg.worker = worker
        seg.started = self.now
        self.running += 1
        t = self.now
        if startup:
            seg.phases.append(("startup", t, t + costs.startup))
            t += costs.startup
        if origin.restore:
            seg.phases.append(("restore", t, t + costs.restore))
            t += costs.restore
        milestones = set(env.milestones) | {env.stop_at}
        every = costs.checkpoint_every if self.resume else 0
        state = origin.state
        uploaded = t  # when the background upload in flight (if any) is committed
        for epoch in range(origin.start + 1, env.stop_at + 1):
            state, metrics, seconds = self.bench.advance(state, env.params, epoch)
            seg.phases.append(("compute", t, t + seconds))
            t += seconds
            seg.trained.append((t, epoch, metrics))
            milestone = epoch in milestones
            if not (milestone or (every > 0 and epoch % every == 0)):
                continue
            if uploaded > t:  # one upload in flight: a new save waits for the previous one
                seg.phases.append(("save", t, uploaded))
                t = uploaded
            if milestone or not costs.background_saves:
                seg.phases.append(("save", t, t + costs.save))
                t += costs.save
                seg.events.append(_Event(t, epoch, metrics if milestone else None, state))
            else:
                seg.phases.append(("save", t, t + costs.snapshot))
                t += costs.snapshot
                uploaded = t + costs.save
                seg.events.append(_Event(uploaded, epoch, None, state))
        seg.events.sort(key=lambda e: e.time)  # background commits interleave with the rest
        if not seg.events:  # nothing to train (start >= stop_at): exit right after start-up
            seg.events.append(_Event(t, env.stop_at, None, None))
        self._push(seg.events[0].time, seg, "event")
        end = seg.events[-1].time
        preempt_at = self.preemptions.upcoming(worker, self.now)
        if preempt_at < end:
            self._push(preempt_at, seg, "preempt")

    def _event(self, seg: _Segment) -> None:
        ev = seg.events[seg.next_event]
        seg.next_event += 1
        env = seg.env
        if ev.state is not None:
            store = CheckpointStore(env.checkpoint_url)
            results = {ev.epoch: ev.metrics} if ev.metrics is not None else None
            info = store.save(
                env.segment, ev.epoch, {"state": json.dumps(ev.state).encode()}, results
            )
            self.counts["checkpoints"] += 1
            seg.last_commit = ev.time
            old = self.periodic.pop(seg.trial, None)
            if old is not None and old != info.url:
                _delete_checkpoint(store, old)
            if ev.metrics is None:
                self.periodic[seg.trial] = info.url
        if ev.metrics is not None:
            seg.results[ev.epoch] = ev.metrics
            self.counts["results"] += 1
            self._changed.add(seg.trial)
            if ev.epoch == self.target_resource:
                busy = self.busy_integral
                self.finals.append((ev.time, busy, seg.trial, ev.metrics))
        if seg.next_event < len(seg.events):
            self._push(seg.events[seg.next_event].time, seg, "event")
            return
        self._account(seg, ev.time, kept_until=ev.time)
        if (
            env.hold_seconds > 0
            and ev.epoch == env.stop_at
            and ev.metrics is not None
            and ev.state is not None
        ):
            # Continue in place: the process holds its worker until the controller decides
            # (the same instant with a zero reconcile interval, else the next tick).
            seg.held_at, seg.held_state, seg.held_since = ev.epoch, ev.state, ev.time
            seg.phases = []
            seg.gen += 1  # a preemption planned past the segment's end no longer applies
            self._push(ev.time + env.hold_seconds + env.slot_seconds, seg, "expire")
            self._changed.add(seg.trial)
            return
        self._exit(seg)

    def _exit(self, seg: _Segment) -> None:
        """The segment's process exits 0 (its last checkpoint and result are committed)."""
        seg.status = SegmentStatus("exited", exit_code=0)
        self._changed.add(seg.trial)
        self.origins.pop((seg.trial, seg.env.segment), None)
        self._release(seg)

    def _preempt(self, seg: _Segment, t: float) -> None:
        self.preemptions.consume(seg.worker)
        self.counts["preemptions"] += 1
        self._cut(seg, t, preempted=True)
        seg.status = SegmentStatus("exited", exit_code=EXIT_SIGTERM, preempted=True)
        self._changed.add(seg.trial)
        self._release(seg)

    def _cut(self, seg: _Segment, t: float, preempted: bool) -> None:
        """End a running segment early at `t` and account its GPU time."""
        if preempted:
            kept = seg.last_commit if self.resume else math.nan
            lost_kind = "preempted"
        else:
            done = [e.time for e in seg.events[: seg.next_event]]
            kept = done[-1] if done else math.nan
            lost_kind = "stopLatency"
        self._account(seg, t, kept_until=kept, lost_kind=lost_kind)
        seg.gen += 1

    def _account(
        self, seg: _Segment, t: float, kept_until: float, lost_kind: str = "preempted"
    ) -> None:
        acct = self.acct
        acct["busy"] += t - seg.started
        log = self.epochs.setdefault(seg.trial, [])
        for end, epoch, metrics in seg.trained:
            if end > t:
                break
            kept = not math.isnan(kept_until) and end <= kept_until
            rec = {"segment": seg.env.segment, "epoch": epoch, "seconds": round(end, 3)}
            log.append({**rec, "metrics": metrics, **({} if kept else {"lost": True})})
        seg.trained = []
        for kind, a, b in seg.phases:
            if a >= t:
                break
            span = min(b, t) - a
            if kind != "compute":
                acct[kind] += span
            elif not math.isnan(kept_until) and b <= kept_until:
                acct["useful"] += span
            else:
                acct[lost_kind] += span

    def cut_at(self, limit: float) -> None:
        """The time limit: every segment still running ends at `limit` (what it trained to its
        last checkpoint counts as useful, the epoch in progress as `cutAtLimit`) and every held
        or idle process lets go of its worker. Nothing runs after this."""
        self._integrate(limit)
        self.now = limit
        for seg in list(self.segments.values()):
            if seg.status is not None or seg.worker < 0:
                continue
            if seg.held_at is not None:
                self._end_hold(seg)
            else:
                self._account(seg, limit, kept_until=limit, lost_kind="cutAtLimit")
            seg.gen += 1
            seg.status = SegmentStatus("exited", exit_code=EXIT_SIGTERM)
            self.running -= 1
        self.queue.clear()
        self.heap = []

    def _release(self, seg: _Segment) -> None:
        self._integrate(self.now)
        self.running -= 1
        heapq.heappush(self.free, seg.worker)
        seg.phases = []
        seg.events = []
        while self.queue and self.free:
            nxt = self.segments[self.queue.popleft()]
            self._start(nxt, heapq.heappop(self.free))

    # ------------------------------------------------------------------ figures

    def accounting(self) -> dict[str, float]:
        a = dict(self.acct)
        a["lost"] = sum(a[k] for k in LOST_KINDS)
        return a


def _delete_checkpoint(store: CheckpointStore, url: str) -> None:
    path = store._path_of(url)
    try:
        store.fs.rm_file(f"{path}/MANIFEST.json")
        store.fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
