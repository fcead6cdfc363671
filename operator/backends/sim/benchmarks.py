"""Learning-curve sources for the simulator: the YAHPO lcbench surrogate and synthetic
path-dependent functions where PBT's schedules matter.

A benchmark is a small state machine over JSON-able states, so that a simulated checkpoint holds
the state (a few bytes) and every resume, promotion and PBT exploit goes through real checkpoints:

- `initial(params)`: the state of an untrained model;
- `restore(state, params)`: the state a segment with `params` starts from, given a checkpoint's
  state (its own after a pause/preemption, a donor's after a PBT exploit);
- `advance(state, params, epoch)`: train one resource unit (to `epoch`); returns the new state,
  the metrics at `epoch`, and the simulated seconds that unit took on one GPU.

Continuation rule for the stateless lcbench surrogate (PBT changes a configuration mid-training)
---------------------------------------------------------------------------------------------
The surrogate is f(config, epoch): it has no notion of a model trained under one configuration and
continued under another. We define the state as (epoch e, the metrics actually reached, a "gap"
g = reached - f(config, e) measured at the epoch s where the configuration last changed). A model
at epoch e' > s then reports

    value(e') = f(config, e') + g · 2^(-(e' - s) / h)          (h: carry-over half-life, epochs)

and on a configuration change at epoch e (a PBT exploit/explore) the state is re-anchored:
s = e, g = value(e) - f(new config, e). So
- the metric is continuous at the switch (changing the learning rate does not change the network's
  accuracy at that instant; the donor's quality is what the recipient starts from);
- it then relaxes towards the new configuration's own curve from the same epoch ("progress is
  kept": a network at epoch 20 stays at epoch 20, FORMAT.md's suggestion), forgetting the
  donor's advantage (or deficit) with half-life h (default 2 epochs; h = 0 is the plain rule
  "continue on the new curve from the same epoch", h = inf keeps the offset forever);
- with an unchanged configuration (pause/resume, preemption) the anchor is kept, so a resumed
  curve is bit-identical to an uninterrupted one.
Epoch time is the new configuration's own (time(e) - time(e-1) of f), and `time` is cumulative.
Known limits: the rule cannot invent schedule effects the surrogate never saw (a decaying learning
rate is no better on lcbench than its best fixed value at each epoch); for those, use the
synthetic `moving-lr` benchmark, which has a real state.

Synthetic benchmarks
--------------------
`moving-lr` (minimise `val_loss`, one hyperparameter `lr` in [1e-3, 1] log): an SGD caricature
with a state. The loss relaxes towards a noise floor proportional to the learning rate at a speed
proportional to it: L' = F + (L - F)·exp(-2·lr), F = 0.5·lr, L0 = 1. A large lr is fast but
stalls high, a small one is precise but slow: the best learning rate moves down as the loss falls,
so a decaying schedule (what PBT discovers) beats every fixed lr. Over 40 epochs the best fixed
lr (≈0.065) ends at ≈0.038; a good schedule reaches below 0.01.

`toy-quadratic` (maximise `score`, hyperparameters h0, h1 in [0, 1]): the PBT paper's toy
(Jaderberg et al. 2017, Fig. 2): θ ∈ R², Q(θ) = 1.2 - (θ0² + θ1²), trained by gradient ascent on
the surrogate Q̂(θ|h) = 1.2 - (h0·θ0² + h1·θ1²) from θ = (0.9, 0.9); 4 steps of size 0.01 per
epoch. The optimum 1.2 needs both h large; a configuration is judged on Q, trained on Q̂.

`digits-mlp` (minimise `val_loss`, also reports `val_accuracy`; one hyperparameter `lr` in
[1e-3, 1] log): a real network trained for real, where the schedule matters. A 64-16-10 tanh MLP
on scikit-learn's bundled digits (1,797 8x8 images; fixed split: 1,200 train, 597 validation),
trained by SGD with momentum 0.9 on minibatches of 32 with Gaussian pixel noise (std 0.3) as
augmentation, so the gradient noise sets a loss floor that grows with the learning rate. One
resource unit is 10 SGD steps (320 examples, about a quarter of the training split), a few
milliseconds on one CPU core. The state is the real model: the weights and the momentum buffer
(float64, base64 in the JSON state), so a checkpoint holds them and a PBT exploit copies the
donor's network and optimiser for real. Everything is seeded: initial weights by the starting
configuration (and the benchmark's `seed`), each unit's minibatches and noise by (the lineage's
key, the unit's index, the configuration), so a run is bit-identical given its decisions.
Measured over 40 units (median of 3 initialisations): fixed lr 0.03 / 0.1 / 0.3 end at val_loss
0.183 / 0.170 / 0.279; an exponential decay from 0.3 to 0.03 ends at 0.131.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

State = dict[str, Any]

# Shipped with the package (Apache-2.0, licence and attribution beside it), so a fresh clone or
# a wheel can simulate without anything next to the repository.
DEFAULT_LCBENCH_DIR = Path(__file__).resolve().parent / "data" / "yahpo-lcbench"


class Benchmark(Protocol):
    name: str
    metrics: tuple[str, ...]
    goals: dict[str, str]  # metric -> minimize | maximize
    max_resource: int
    search_space: dict[str, dict[str, Any]]  # the Study searchSpace that matches it

    def check(self, params: list[str], resource_max: int) -> list[str]:
        """Problems with running a study with these parameter names on this benchmark."""

    def initial(self, params: Mapping[str, Any]) -> State: ...

    def restore(self, state: State, params: Mapping[str, Any]) -> State: ...

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]: ...


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(dict(a), sort_keys=True) == json.dumps(dict(b), sort_keys=True)


# --------------------------------------------------------------------------- lcbench

LC_INPUTS = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
LC_OUTPUTS = (
    "time",
    "val_accuracy",
    "val_cross_entropy",
    "val_balanced_accuracy",
    "test_cross_entropy",
    "test_balanced_accuracy",
)
LC_GOALS = {
    "time": "minimize",
    "val_accuracy": "maximize",
    "val_cross_entropy": "minimize",
    "val_balanced_accuracy": "maximize",
    "test_cross_entropy": "minimize",
    "test_balanced_accuracy": "maximize",
}
LC_EPOCHS = 52


class LCBenchSurrogate:
    """The YAHPO lcbench ONNX surrogate, called directly with onnxruntime (FORMAT.md)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        import onnxruntime as ort

        self.directory = Path(directory or DEFAULT_LCBENCH_DIR)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        encoding = json.loads((self.directory / "encoding.json").read_text())
        self.task_codes: dict[str, int] = {
            k: int(v) for k, v in encoding["OpenML_task_id"].items() if k != "#na#"
        }
        space = json.loads((self.directory / "config_space.json").read_text())
        self.space = {h["name"]: h for h in space["hyperparameters"]}

    def predict(self, task: str, rows: np.ndarray) -> np.ndarray:
        """rows: float [n, 8] in LC_INPUTS order -> float [n, 6] in LC_OUTPUTS order."""
        code = self.task_codes[str(task)]
        x_cat = np.full((rows.shape[0], 1), code, dtype=np.int32)
        out = self.session.run(
            ["output"], {"x_cat": x_cat, "x_cont": rows.astype(np.float32, copy=False)}
        )[0]
        return np.asarray(out, dtype=np.float64)


class LCBench:
    """lcbench as a simulator benchmark; see the module docstring for the continuation rule."""

    name = "lcbench"
    metrics: tuple[str, ...] = LC_OUTPUTS
    max_resource = LC_EPOCHS

    def __init__(
        self,
        task: str = "3945",
        directory: str | Path | None = None,
        carry_half_life: float = 2.0,
        time_scale: float = 1.0,
        cache_size: int = 20000,
    ) -> None:
        self.goals = dict(LC_GOALS)
        self.surrogate = LCBenchSurrogate(directory)
        if str(task) not in self.surrogate.task_codes:
            known = ", ".join(sorted(self.surrogate.task_codes, key=int))
            raise ValueError(f"lcbench has no task {task!r}; tasks: {known}")
        self.task = str(task)
        self.carry_half_life = carry_half_life
        self.time_scale = time_scale
        self.cache: OrderedDict[tuple[float, ...], np.ndarray] = OrderedDict()
        self.cache_size = cache_size
        self.search_space: dict[str, dict[str, Any]] = {}
        for name in LC_INPUTS[1:]:
            h = self.surrogate.space[name]
            kind = "int" if h["type"] == "uniform_int" else "float"
            entry: dict[str, Any] = {"type": kind, "low": h["lower"], "high": h["upper"]}
            if h.get("log"):
                entry["log"] = True
            self.search_space[name] = entry

    def check(self, params: list[str], resource_max: int) -> list[str]:
        errors = []
        unknown = sorted(set(params) - set(LC_INPUTS[1:]))
        if unknown:
            errors.append(
                f"searchSpace has {', '.join(unknown)}, which lcbench does not know; its "
                f"hyperparameters are {', '.join(LC_INPUTS[1:])} (missing ones take "
                "config_space.json's defaults)"
            )
        if resource_max > LC_EPOCHS:
            errors.append(f"resource.max={resource_max}: lcbench has epochs 1..{LC_EPOCHS}")
        return errors

    def config(self, params: Mapping[str, Any]) -> tuple[float, ...]:
        values = []
        for name in LC_INPUTS[1:]:
            h = self.surrogate.space[name]
            v = float(params.get(name, h["default"]))
            values.append(min(max(v, float(h["lower"])), float(h["upper"])))
        return tuple(values)

    def curve(self, params: Mapping[str, Any]) -> np.ndarray:
        """f(config, epoch) for epochs 1..52: float [53, 6], row 0 all zeros."""
        key = self.config(params)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        rows = np.empty((LC_EPOCHS, 8))
        rows[:, 0] = np.arange(1, LC_EPOCHS + 1)
        rows[:, 1:] = key
        out = np.zeros((LC_EPOCHS + 1, len(LC_OUTPUTS)))
        out[1:] = self.surrogate.predict(self.task, rows)
        self.cache[key] = out
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return out

    def initial(self, params: Mapping[str, Any]) -> State:
        return {"epoch": 0, "anchor": 0, "gap": [0.0] * (len(LC_OUTPUTS) - 1), "time": 0.0}

    def restore(self, state: State, params: Mapping[str, Any]) -> State:
        if "params" not in state or _same(state["params"], params) or state["epoch"] == 0:
            return dict(state)
        e = int(state["epoch"])
        reached = self._value(state, state["params"], e)
        now = self.curve(params)[e, 1:]
        return {**state, "anchor": e, "gap": [float(x) for x in reached - now]}

    def _value(self, state: State, params: Mapping[str, Any], epoch: int) -> np.ndarray:
        base = self.curve(params)[epoch, 1:]
        h = self.carry_half_life
        dt = epoch - int(state["anchor"])
        if h <= 0:
            decay = 1.0 if dt == 0 else 0.0
        elif math.isinf(h):
            decay = 1.0
        else:
            decay = 2.0 ** (-dt / h)
        return np.asarray(base + np.asarray(state["gap"]) * decay)

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]:
        curve = self.curve(params)
        seconds = max(float(curve[epoch, 0] - curve[epoch - 1, 0]), 1e-3) * self.time_scale
        values = self._value(state, params, epoch)
        total = float(state["time"]) + seconds
        new = {**state, "epoch": epoch, "time": total, "params": dict(params)}
        metrics = {"time": total}
        metrics.update({m: float(v) for m, v in zip(LC_OUTPUTS[1:], values, strict=True)})
        return new, metrics, seconds


# --------------------------------------------------------------------------- synthetic


class MovingLR:
    """`moving-lr`: the optimal learning rate moves down as training progresses (see above)."""

    name = "moving-lr"
    metrics: tuple[str, ...] = ("val_loss",)
    max_resource = 1000

    def __init__(self, seconds_per_epoch: float = 60.0) -> None:
        self.seconds = seconds_per_epoch
        self.goals = {"val_loss": "minimize"}
        self.search_space: dict[str, dict[str, Any]] = {
            "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True}
        }

    def check(self, params: list[str], resource_max: int) -> list[str]:
        return [] if "lr" in params else ["moving-lr needs a searchSpace parameter `lr`"]

    def initial(self, params: Mapping[str, Any]) -> State:
        return {"epoch": 0, "loss": 1.0}

    def restore(self, state: State, params: Mapping[str, Any]) -> State:
        return dict(state)  # a real state: the new lr simply continues from it

    @staticmethod
    def step(loss: float, lr: float) -> float:
        floor = 0.5 * lr
        return floor + (loss - floor) * math.exp(-2.0 * lr)

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]:
        loss = self.step(float(state["loss"]), float(params["lr"]))
        return {"epoch": epoch, "loss": loss}, {"val_loss": loss}, self.seconds


class ToyQuadratic:
    """`toy-quadratic`: the PBT paper's toy example (see above)."""

    name = "toy-quadratic"
    metrics: tuple[str, ...] = ("score",)
    max_resource = 1000
    steps_per_epoch = 4
    step_size = 0.01

    def __init__(self, seconds_per_epoch: float = 60.0) -> None:
        self.seconds = seconds_per_epoch
        self.goals = {"score": "maximize"}
        self.search_space: dict[str, dict[str, Any]] = {
            "h0": {"type": "float", "low": 0.0, "high": 1.0},
            "h1": {"type": "float", "low": 0.0, "high": 1.0},
        }

    def check(self, params: list[str], resource_max: int) -> list[str]:
        missing = [p for p in ("h0", "h1") if p not in params]
        return [f"toy-quadratic needs searchSpace parameter(s) {', '.join(missing)}"] * bool(
            missing
        )

    def initial(self, params: Mapping[str, Any]) -> State:
        return {"epoch": 0, "theta": [0.9, 0.9]}

    def restore(self, state: State, params: Mapping[str, Any]) -> State:
        return dict(state)

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]:
        t0, t1 = (float(x) for x in state["theta"])
        h0, h1 = float(params["h0"]), float(params["h1"])
        for _ in range(self.steps_per_epoch):
            t0, t1 = t0 - self.step_size * 2 * h0 * t0, t1 - self.step_size * 2 * h1 * t1
        score = 1.2 - (t0 * t0 + t1 * t1)
        return {"epoch": epoch, "theta": [t0, t1]}, {"score": score}, self.seconds


class DigitsMLP:
    """`digits-mlp`: a real MLP trained on scikit-learn's digits (see the module docstring)."""

    name = "digits-mlp"
    metrics: tuple[str, ...] = ("val_loss", "val_accuracy")
    max_resource = 1000
    hidden = 16
    batch = 32
    steps_per_unit = 10
    momentum = 0.9
    noise = 0.3
    train_size = 1200

    def __init__(self, seconds_per_epoch: float = 60.0, seed: int = 0) -> None:
        from sklearn.datasets import load_digits

        self.seconds = seconds_per_epoch
        self.seed = seed
        self.goals = {"val_loss": "minimize", "val_accuracy": "maximize"}
        self.search_space: dict[str, dict[str, Any]] = {
            "lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True}
        }
        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))  # the split is fixed, not seeded
        x, y = np.asarray(x, dtype=np.float64)[order] / 16.0, np.asarray(y)[order]
        n = self.train_size
        self.x_train, self.y_train = x[:n], y[:n]
        self.x_val, self.y_val = x[n:], y[n:]
        self.shapes = [(64, self.hidden), (self.hidden,), (self.hidden, 10), (10,)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self._controller: Any = None

    def check(self, params: list[str], resource_max: int) -> list[str]:
        return [] if "lr" in params else ["digits-mlp needs a searchSpace parameter `lr`"]

    def _blas(self) -> Any:
        """threadpoolctl's controller, found once: looking the libraries up costs ~1 ms a call."""
        if self._controller is None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        return self._controller

    # -- state <-> arrays ----------------------------------------------------------------------
    @staticmethod
    def _encode(flat: np.ndarray) -> str:
        return base64.b64encode(np.ascontiguousarray(flat, dtype="<f8").tobytes()).decode()

    def _decode(self, text: str) -> list[np.ndarray]:
        flat = np.frombuffer(base64.b64decode(text), dtype="<f8")
        out, at = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            out.append(flat[at : at + size].reshape(shape).copy())
            at += size
        return out

    def _key(self, *parts: Any) -> int:
        text = json.dumps([self.seed, *parts], sort_keys=True, default=str)
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")

    def initial(self, params: Mapping[str, Any]) -> State:
        key = self._key("init", dict(params))
        rng = np.random.default_rng(key)
        w = [
            rng.normal(0.0, 1.0 / 8.0, self.shapes[0]),
            np.zeros(self.hidden),
            rng.normal(0.0, 1.0 / math.sqrt(self.hidden), self.shapes[2]),
            np.zeros(10),
        ]
        flat = np.concatenate([a.ravel() for a in w])
        return {
            "epoch": 0,
            "key": f"{key:016x}",
            "weights": self._encode(flat),
            "velocity": self._encode(np.zeros_like(flat)),
        }

    def restore(self, state: State, params: Mapping[str, Any]) -> State:
        return dict(state)  # a real state: the new lr trains the restored network on

    def _forward(self, w: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.tanh(x @ w[0] + w[1])
        z = h @ w[2] + w[3]
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return h, p / p.sum(axis=1, keepdims=True)

    def evaluate(self, state: State) -> dict[str, float]:
        """Validation loss and accuracy of the network in `state`."""
        _, p = self._forward(self._decode(state["weights"]), self.x_val)
        rows = np.arange(len(self.y_val))
        loss = float(-np.log(p[rows, self.y_val] + 1e-12).mean())
        return {"val_loss": loss, "val_accuracy": float((p.argmax(axis=1) == self.y_val).mean())}

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]:
        lr = float(params["lr"])
        w, v = self._decode(state["weights"]), self._decode(state["velocity"])
        rng = np.random.default_rng(self._key("unit", state["key"], epoch, dict(params)))
        # Matrices this small only lose to BLAS threads (and several runs share the cores).
        with self._blas().limit(limits=1, user_api="blas"):
            for _ in range(self.steps_per_unit):
                rows = rng.integers(0, len(self.y_train), self.batch)
                x = self.x_train[rows] + rng.normal(0.0, self.noise, (self.batch, 64))
                h, p = self._forward(w, x)
                g = p
                g[np.arange(self.batch), self.y_train[rows]] -= 1.0
                g /= self.batch
                gh = (g @ w[2].T) * (1.0 - h * h)
                grads = (x.T @ gh, gh.sum(axis=0), h.T @ g, g.sum(axis=0))
                for k, grad in enumerate(grads):
                    v[k] = self.momentum * v[k] + grad
                    w[k] = w[k] - lr * v[k]
            new = {
                **state,
                "epoch": epoch,
                "weights": self._encode(np.concatenate([a.ravel() for a in w])),
                "velocity": self._encode(np.concatenate([a.ravel() for a in v])),
            }
            metrics = self.evaluate(new)
        return new, metrics, self.seconds


NAMES = ("lcbench", "moving-lr", "toy-quadratic", "digits-mlp")


def make_benchmark(
    name: str,
    task: str | None = None,
    lcbench_dir: str | Path | None = None,
    carry_half_life: float = 2.0,
    seconds_per_epoch: float = 60.0,
    time_scale: float = 1.0,
) -> Benchmark:
    """`time_scale` multiplies lcbench's epoch times (its MLPs train in seconds on a CPU)."""
    if name == "lcbench":
        return LCBench(
            task or "3945", lcbench_dir, carry_half_life=carry_half_life, time_scale=time_scale
        )
    if name == "moving-lr":
        return MovingLR(seconds_per_epoch)
    if name == "toy-quadratic":
        return ToyQuadratic(seconds_per_epoch)
    if name == "digits-mlp":
        return DigitsMLP(seconds_per_epoch)
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(NAMES)}")
