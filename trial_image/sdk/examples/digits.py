"""A small PyTorch MLP on scikit-learn's bundled digits data set (offline, ~50 ms an epoch).

Run by kubetune (``python -m kubetune.trial.examples.digits``) with these params:

- ``lr`` (float), ``momentum`` (float), ``weight_decay`` (float, default 0): SGD settings; on
  restore they are applied to the loaded optimizer, which is how a PBT exploit+explore
  continues a donor's weights with new hyperparameters;
- ``hidden`` (int), ``layers`` (int, default 1), ``activation`` (relu|tanh): the architecture
  (must match the checkpoint's when restoring);
- ``prune`` (float in [0, 1), default 0): fraction of weights zeroed by magnitude pruning after
  every epoch; a training hyperparameter, so PBT may perturb it;
- ``batch_size`` (int), ``seed`` (int, default 0).

Each epoch reports ``val_loss``, ``val_acc``, ``n_params`` (model size), ``nnz_params`` (weights
left non-zero by pruning: with ``val_acc`` a conflicting pair for a multi-objective study) and
``latency_ms`` (validation inference per sample), then commits a checkpoint (model, optimizer,
epoch, RNG states).

Test hooks: ``KUBETUNE_EXAMPLE_SLEEP`` (seconds added to every epoch) and
``KUBETUNE_EXAMPLE_CRASH_AT`` (raise at the start of that epoch).
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import kubetune.trial as kt

SPLIT_SEED = 12345  # fixed: every trial sees the same train/validation split


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits; read directly when possible.

    ``import sklearn`` costs ~1.5 s, a large share of a short trial's start-up; the bundled CSV
    is exactly what ``load_digits`` parses, so read it and fall back to the API otherwise.
    """
    spec = importlib.util.find_spec("sklearn")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(base, "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return np.asarray(x), np.asarray(y)


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = _digits()
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = len(xt) // 5
    val, train = perm[:n_val], perm[n_val:]
    return xt[train], yt[train], xt[val], yt[val]


def build_model(params: dict[str, Any]) -> nn.Module:
    act: type[nn.Module] = {"relu": nn.ReLU, "tanh": nn.Tanh}[str(params.get("activation", "relu"))]
    hidden = int(params.get("hidden", 64))
    layers: list[nn.Module] = []
    width = 64
    for _ in range(int(params.get("layers", 1))):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def apply_hyperparameters(opt: torch.optim.Optimizer, params: dict[str, Any]) -> None:
    """Set the current params' optimizer settings (also after loading a donor's optimizer)."""
    for group in opt.param_groups:
        group["lr"] = float(params["lr"])
        group["momentum"] = float(params.get("momentum", 0.0))
        group["weight_decay"] = float(params.get("weight_decay", 0.0))


def prune_(model: nn.Module, fraction: float) -> None:
    """Magnitude pruning: zero the smallest `fraction` of all weights (biases are kept).

    Applied after every epoch, so the network learns around the mask; because the fraction is
    a hyperparameter and not part of the architecture, PBT can perturb it mid-training.
    """
    if fraction <= 0:
        return
    with torch.no_grad():
        weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
        flat = torch.cat([w.abs().flatten() for w in weights])
        k = int(fraction * flat.numel())
        if k < 1:
            return
        threshold = flat.kthvalue(k).values
        for w in weights:
            w.mul_((w.abs() > threshold).to(w.dtype))


def nonzero_params(model: nn.Module) -> int:
    return int(sum(int((t != 0).sum()) for t in model.parameters()))


def main() -> None:
    torch.set_num_threads(int(os.environ.get("KUBETUNE_EXAMPLE_THREADS", "1")))
    sleep_s = float(os.environ.get("KUBETUNE_EXAMPLE_SLEEP", "0") or 0)
    crash_at = int(os.environ.get("KUBETUNE_EXAMPLE_CRASH_AT", "0") or 0)

    trial = kt.init()
    p = trial.params
    torch.manual_seed(int(p.get("seed", 0)))
    x_train, y_train, x_val, y_val = load_data()
    model = build_model(p)
    opt = torch.optim.SGD(model.parameters(), lr=float(p["lr"]))
    shuffle = torch.Generator().manual_seed(int(p.get("seed", 0)))
    n_params = sum(t.numel() for t in model.parameters())
    loss_fn = nn.CrossEntropyLoss()

    state, start = trial.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        shuffle.set_state(state["shuffle"])
        print(f"resumed from epoch {start}", flush=True)
    apply_hyperparameters(opt, p)
    batch = int(p.get("batch_size", 64))

    # trial.steps() ends at stop_at or on SIGTERM, and may go on in this process when the
    # controller continues the trial in place (e.g. an ASHA promotion at once).
    for epoch in trial.steps(start):
        if crash_at and epoch == crash_at:
            raise RuntimeError(f"KUBETUNE_EXAMPLE_CRASH_AT={crash_at}: crashing as asked")
        model.train()
        perm = torch.randperm(len(x_train), generator=shuffle)
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        prune_(model, float(p.get("prune", 0.0)))
        if sleep_s:
            time.sleep(sleep_s)
        model.eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            logits = model(x_val)
            latency_ms = (time.perf_counter() - t0) * 1000.0 / len(x_val)
            val_loss = float(loss_fn(logits, y_val))
            val_acc = float((logits.argmax(1) == y_val).float().mean())
        trial.report(
            epoch,
            val_loss=val_loss,
            val_acc=val_acc,
            n_params=n_params,
            nnz_params=nonzero_params(model),
            latency_ms=latency_ms,
        )
        trial.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "rng": torch.get_rng_state(),
                "shuffle": shuffle.get_state(),
            },
            epoch,
        )
        print(f"epoch {epoch} val_loss={val_loss:.4f} val_acc={val_acc:.4f}", flush=True)
    trial.finish()


if __name__ == "__main__":
    main()
