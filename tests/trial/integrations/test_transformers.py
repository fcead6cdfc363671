"""The Transformers callback in process: a real ``Trainer`` on a one-layer GPT-2 built from config.

No download: ``GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, ...))`` on 32 fixed random token
sequences (2 steps an epoch), checkpoints in a file:// store, the controller's side of a hold
played by a thread on the control channel.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from kubetune.trial import CheckpointError, CheckpointStore, Trial, TrialEnv, control
from kubetune.trial.integrations.transformers import FORMAT, KubetuneCallback, unpack_folder

pytestmark = pytest.mark.slow


class Tokens(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.ids = torch.randint(0, 16, (32, 8), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Probe(TrainerCallback):
    """What the optimizer looks like when training starts (after kubetune applied params)."""

    def __init__(self) -> None:
        self.lr: float | None = None
        self.exp_avg: list[torch.Tensor] = []
        self.global_step: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        opt = kw["optimizer"]
        self.lr = opt.param_groups[0]["lr"]
        self.global_step = state.global_step
        self.exp_avg = [
            opt.state[p]["exp_avg"].clone() for g in opt.param_groups for p in g["params"]
            if p in opt.state
        ]  # fmt: skip


def _trial(tmp_path: Path, trial: str = "t0001", **kw: Any) -> Trial:
    base: dict[str, Any] = dict(
        study="s",
        trial_id=trial,
        segment=0,
        params={"lr": 0.01},
        stop_at=2,
        milestones=[1],
        objectives=["eval_loss"],
        checkpoint_url=f"file://{tmp_path}/ckpt/{trial}",
    )
    base.update(kw)
    return Trial(TrialEnv(**base), serve_metrics=False)


def _train(
    trial: Trial,
    out: Path,
    restore: bool = True,
    epochs: int = 6,
    extra: list[TrainerCallback] | None = None,
) -> tuple[Trainer, Probe]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=16, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    )
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        learning_rate=float(trial.params["lr"]),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    kube, probe = KubetuneCallback(trial), Probe()
    trainer = Trainer(
        model=model, args=args, train_dataset=Tokens(), eval_dataset=Tokens(),
        callbacks=[kube, probe, *(extra or [])],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=kube.restore(str(out)) if restore else None)
    return trainer, probe


def _saved(url: str, step: int) -> dict[str, Any]:
    store = CheckpointStore(url)
    (info,) = [i for i in store.list() if i.resource == step]
    state = torch.load(io.BytesIO(store.read(info)["state.pt"]), weights_only=False)
    assert state["format"] == FORMAT
    return dict(state)


def test_a_segment_reports_and_saves_each_epoch_and_stops_at_stop_at(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    trainer, _ = _train(trial, tmp_path / "out")
    assert trainer.state.global_step == 4 and trainer.state.epoch == 2  # of 6 epochs
    assert sorted(trial.results()) == [1, 2]
    assert "eval_loss" in trial.results()[2]
    saved = _saved(trial.env.checkpoint_url, 2)
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(saved["files"])
    assert saved["global_step"] == 4
    # Committed to the trial's storage, the local checkpoint-N folders are gone.
    assert not list((tmp_path / "out").glob("checkpoint-*"))


def test_the_next_segment_resumes_the_trainer_from_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _train(_trial(tmp_path), tmp_path / "a")
    trial = _trial(
        tmp_path, segment=1, stop_at=4, milestones=[4],
        restore_from=f"file://{tmp_path}/ckpt/t0001/ckpt-0000-00000002",
    )  # fmt: skip
    trainer, probe = _train(trial, tmp_path / "b")
    assert "kubetune: Trainer resumed at epoch 2 (global step 4)" in capsys.readouterr().out
    assert probe.global_step == 4 and trainer.state.global_step == 8
    assert sorted(trial.results()) == [1, 2, 4]


def test_an_exploit_restores_the_donors_optimizer_and_applies_the_recipients_lr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    donor_url = f"file://{tmp_path}/ckpt/t0000"
    _train(_trial(tmp_path, trial="t0000", params={"lr": 0.02}), tmp_path / "a")
    donor = _saved(donor_url, 2)
    trial = _trial(
        tmp_path, segment=1, params={"lr": 0.005}, stop_at=3, milestones=[3],
        restore_from=f"{donor_url}/ckpt-0000-00000002",
    )  # fmt: skip
    trainer, probe = _train(trial, tmp_path / "b")
    # The donor's linear schedule was at 8/12 of its base 0.02; the recipient's base is 0.005.
    out = capsys.readouterr().out
    assert "applied trial params to the optimizer: lr 0.0133333 -> 0.00333333 (group 0)" in out
    assert probe.lr == pytest.approx(0.005 * 8 / 12)
    optimizer = torch.load(io.BytesIO(donor["files"]["optimizer.pt"]), weights_only=False)
    donor_avg = [s["exp_avg"] for _, s in sorted(optimizer["state"].items())]
    assert donor_avg and len(donor_avg) == len(probe.exp_avg)
    assert all(torch.equal(a, b) for a, b in zip(probe.exp_avg, donor_avg, strict=True))
    # The scheduler computes from the new base rate: the next epoch trained with 0.005.
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005 * (1 - 6 / 12))


def test_continue_in_place_trains_on_in_the_same_train_call(tmp_path: Path) -> None:
    trial = _trial(tmp_path, control_dir=str(tmp_path / "control"), hold_seconds=30.0)
    env = {"SEGMENT": "1", "STOP_AT": "4", "MILESTONES": "4", "PARAMS": '{"lr": 0.002}'}

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
    trainer, _ = _train(trial, tmp_path / "out")
    thread.join()
    assert trainer.state.global_step == 8 and trial.segment == 1
    assert sorted(CheckpointStore(trial.env.checkpoint_url).read_results(min_segment=1)) == [4]
    # lr 0.002 became the linear schedule's base from epoch 3 on: 0.002 x (1 - 8/12) at the end.
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.002 * (1 - 8 / 12))


class Preempt(TrainerCallback):
    """A real SIGTERM to this process at the first step of the second epoch."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == 3:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_finishes_the_epoch_saves_it_and_ends_training(tmp_path: Path) -> None:
    trial = _trial(tmp_path, stop_at=5, milestones=[])
    previous = signal.getsignal(signal.SIGTERM)
    trial.install_signal_handler()  # what kt.init() does in a trial process
    try:
        trainer, _ = _train(trial, tmp_path / "out", extra=[Preempt()])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert trial.preempted and trial.exit_code() == 75
    assert trainer.state.global_step == 4  # epoch 2 was finished, not cut at step 3
    trial.wait_saved()  # what finish() does before it exits with 75
    assert [i.resource for i in CheckpointStore(trial.env.checkpoint_url).list()] == [1, 2]


def test_misuse_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"resume_from_checkpoint=callback.restore"):
        _train(_trial(tmp_path / "a"), tmp_path / "a" / "out", restore=False)
    with pytest.raises(ValueError, match=r"num_train_epochs=1\) ends before .* stop_at 2"):
        _train(_trial(tmp_path / "b"), tmp_path / "b" / "out", epochs=1)


def test_unpacking_refuses_a_path_outside_the_restore_folder(tmp_path: Path) -> None:
    unpack_folder({"trainer_state.json": b"{}", "sub/a.bin": b"x"}, str(tmp_path / "ok"))
    assert (tmp_path / "ok" / "sub" / "a.bin").read_bytes() == b"x"
    with pytest.raises(CheckpointError, match=r"'../evil' would be written outside"):
        unpack_folder({"../evil": b"x"}, str(tmp_path / "r"))
    assert not (tmp_path / "evil").exists()
