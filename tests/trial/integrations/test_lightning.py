"""The Lightning callback in process, with a real Trainer and a tiny module on fixed random data.

Each test runs one or two real ``fit`` calls of a 2-layer MLP (2 batches an epoch) against a
file:// checkpoint store; the controller's side of a hold is played by a thread answering on the
control channel, as in tests/trial/test_hold.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kubetune.trial import (
    BadReportError,
    CheckpointError,
    CheckpointStore,
    Trial,
    TrialEnv,
    control,
)
from kubetune.trial.integrations.lightning import FORMAT, KubetuneCallback

pytestmark = pytest.mark.slow


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.1, on_batch: Any = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.lr = lr
        self.on_batch = on_batch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.on_batch is not None:
            self.on_batch(self, batch_idx)
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _data() -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32), DataLoader(TensorDataset(x, y), 64)


def _trial(tmp_path: Path, trial: str = "t0001", **kw: Any) -> Trial:
    base: dict[str, Any] = dict(
        study="s",
        trial_id=trial,
        segment=0,
        params={"lr": 0.1},
        stop_at=2,
        milestones=[1],
        objectives=["val_loss"],
        checkpoint_url=f"file://{tmp_path}/ckpt/{trial}",
    )
    base.update(kw)
    return Trial(TrialEnv(**base), serve_metrics=False)


def _fit(
    trial: Trial, module: Tiny | None = None, restore: bool = True, **trainer_kw: Any
) -> tuple[KubetuneCallback, pl.Trainer]:
    torch.manual_seed(0)
    kube = KubetuneCallback(trial, optimizer_params={"lr": "lr"})
    kw: dict[str, Any] = dict(
        max_epochs=-1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    kw.update(trainer_kw)
    trainer = pl.Trainer(callbacks=[kube], **kw)
    ckpt = kube.restore() if restore else None
    trainer.fit(module or Tiny(), *_data(), ckpt_path=ckpt)
    return kube, trainer


def _saved(trial: Trial, step: int) -> dict[str, Any]:
    store = CheckpointStore(trial.env.checkpoint_url)
    (info,) = [i for i in store.list() if i.resource == step]
    import io

    files = store.read(info)
    state = torch.load(io.BytesIO(files["state.pt"]), weights_only=False)
    assert state["format"] == FORMAT
    ckpt = torch.load(io.BytesIO(state["ckpt"]), weights_only=False)
    return {"state": state, "ckpt": ckpt}


def test_a_segment_reports_and_saves_each_epoch_and_stops_at_stop_at(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    _, trainer = _fit(trial)
    assert trainer.current_epoch == 2  # stopped at stop_at although max_epochs is unlimited
    assert sorted(trial.results()) == [1, 2]
    assert set(trial.results()[2]) == {"val_loss", "train_loss"}
    saved = _saved(trial, 2)
    assert saved["state"]["epoch"] == 2 and saved["ckpt"]["global_step"] == 4
    assert saved["ckpt"]["epoch"] == 1  # Lightning's own 0-based count of the finished epoch


def test_the_next_segment_resumes_from_the_checkpoint_with_lightnings_full_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(_trial(tmp_path))
    saved = _saved(_trial(tmp_path), 2)["ckpt"]
    # A promotion: segment 1 restores this trial's step-2 checkpoint and trains to 4.
    trial = _trial(
        tmp_path, segment=1, stop_at=4, milestones=[2, 4],
        restore_from=f"file://{tmp_path}/ckpt/t0001/ckpt-0000-00000002",
    )  # fmt: skip
    module = Tiny()
    seen: dict[str, Any] = {}

    def first_batch(m: Tiny, batch_idx: int) -> None:
        if not seen:  # the weights and optimizer state Lightning restored, before any step
            seen["weights"] = {k: v.clone() for k, v in m.state_dict().items()}
            seen["global_step"] = m.trainer.global_step

    module.on_batch = first_batch
    _, trainer = _fit(trial, module)
    assert "kubetune: Lightning resumed at epoch 2 (global step 4)" in capsys.readouterr().out
    assert seen["global_step"] == 4 and trainer.global_step == 8
    for k, v in saved["state_dict"].items():
        assert torch.equal(seen["weights"][k], v), k
    assert sorted(trial.results()) == [1, 2, 4]  # milestones; 1, 2 from segment 0 (durable)


def test_an_exploit_restores_the_donors_state_and_applies_the_recipients_lr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(_trial(tmp_path, trial="t0000", params={"lr": 0.2}))  # the donor, lr 0.2
    donor = _saved(_trial(tmp_path, trial="t0000"), 2)["ckpt"]
    trial = _trial(
        tmp_path, segment=1, params={"lr": 0.03}, stop_at=3, milestones=[3],
        restore_from=f"file://{tmp_path}/ckpt/t0000/ckpt-0000-00000002",
    )  # fmt: skip
    seen: dict[str, Any] = {}

    def first_batch(m: Tiny, batch_idx: int) -> None:
        if not seen:
            opt = m.trainer.optimizers[0]
            seen["lr"] = opt.param_groups[0]["lr"]
            seen["buffers"] = [opt.state[p]["momentum_buffer"].clone() for p in m.parameters()]

    _fit(trial, Tiny(lr=0.5, on_batch=first_batch))
    out = capsys.readouterr().out
    assert "applied trial params to the optimizer: lr 0.2 -> 0.03 (group 0)" in out
    assert seen["lr"] == 0.03
    donor_buffers = [s["momentum_buffer"] for s in donor["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(seen["buffers"], donor_buffers, strict=True))


def test_continue_in_place_trains_on_with_the_new_segment_and_params(tmp_path: Path) -> None:
    trial = _trial(tmp_path, control_dir=str(tmp_path / "control"), hold_seconds=30.0)
    env = {"SEGMENT": "1", "STOP_AT": "4", "MILESTONES": "3,4", "PARAMS": '{"lr": 0.05}'}

    def answer() -> None:
        deadline = time.monotonic() + 60
        while control.held_step(str(tmp_path / "control"), 0) is None:
            assert time.monotonic() < deadline, "the trial never held"
            time.sleep(0.01)
        control.decide(
            str(tmp_path / "control"),
            0,
            {"action": "continue", "env": {f"KUBETUNE_{k}": v for k, v in env.items()}},
        )
        # The continued segment holds again at its stop_at 4: this time the answer is exit.
        while control.held_step(str(tmp_path / "control"), 1) is None:
            assert time.monotonic() < deadline, "the continued segment never held"
            time.sleep(0.01)
        control.decide(str(tmp_path / "control"), 1, {"action": "exit"})

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    _, trainer = _fit(trial)
    thread.join()
    assert control.held_step(str(tmp_path / "control"), 0) is None  # answered
    assert trainer.current_epoch == 4 and trial.segment == 1
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.05
    store = CheckpointStore(trial.env.checkpoint_url)
    assert sorted(store.read_results(min_segment=1)) == [3, 4]


def test_sigterm_finishes_the_epoch_saves_it_and_ends_the_fit(tmp_path: Path) -> None:
    trial = _trial(tmp_path, stop_at=5, milestones=[])

    def preempt(m: Tiny, batch_idx: int) -> None:
        if m.trainer.current_epoch == 1 and batch_idx == 0:
            # The callback put the SDK's handler back (Lightning's would raise SystemExit).
            assert signal.getsignal(signal.SIGTERM) == trial._on_sigterm
            os.kill(os.getpid(), signal.SIGTERM)

    _, trainer = _fit(trial, Tiny(on_batch=preempt))
    assert trial.preempted and trial.exit_code() == 75
    assert trainer.current_epoch == 2 and not trainer.received_sigterm
    trial.wait_saved()  # what finish() does before it exits with 75
    assert [i.resource for i in CheckpointStore(trial.env.checkpoint_url).list()] == [1, 2]


def test_misuse_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"ckpt_path=callback.restore\(\)"):
        _fit(_trial(tmp_path / "a"), restore=False)
    with pytest.raises(ValueError, match=r"Trainer\(max_epochs=1\) ends before .* stop_at 2"):
        _fit(_trial(tmp_path / "b"), max_epochs=1)
    with pytest.raises(ValueError, match=r"check_val_every_n_epoch=2\): validate every epoch"):
        _fit(_trial(tmp_path / "e"), check_val_every_n_epoch=2)
    with pytest.raises(BadReportError, match=r"objective metric.*val_acc"):
        _fit(_trial(tmp_path / "c", objectives=["val_acc"]))
    with pytest.raises(ValueError, match="'momentum' is not a parameter of this trial"):
        KubetuneCallback(_trial(tmp_path / "d"), optimizer_params={"momentum": "momentum"})


def test_a_checkpoint_from_another_script_is_refused_by_name(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    trial.save({"model": {}}, 1, wait=True)  # a plain SDK script's state, not Lightning's
    with pytest.raises(CheckpointError, match="not written by the Lightning KubetuneCallback"):
        KubetuneCallback(_trial(tmp_path, segment=1)).restore()
