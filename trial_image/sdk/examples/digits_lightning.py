"""The digits MLP as a PyTorch Lightning module, run by kubetune through ``KubetuneCallback``.

``python -m kubetune.trial.examples.digits_lightning`` with params ``lr``, ``momentum`` (SGD),
``hidden`` (width), ``batch_size`` and ``seed``; ``KUBETUNE_EXAMPLE_MAX_EPOCHS`` is the
Trainer's ``max_epochs`` (default -1: the callback ends every segment at its ``stop_at``).
Each epoch logs ``val_loss`` and ``val_acc`` (validation) and ``train_loss``; the callback
reports them, checkpoints Lightning's full state through the SDK and stops at the segment's
``stop_at``.
"""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import kubetune.trial as kt
from kubetune.trial.examples.digits import build_model, load_data
from kubetune.trial.integrations.lightning import KubetuneCallback


class DigitsModule(pl.LightningModule):
    """An MLP classifier; the optimizer's lr and momentum come from the trial's params."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        self.hp = dict(params)
        self.net = build_model(params)
        self.loss = nn.CrossEntropyLoss()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", self.loss(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.parameters(),
            lr=float(self.hp["lr"]),
            momentum=float(self.hp.get("momentum", 0.0)),
        )


def main() -> None:
    torch.set_num_threads(int(os.environ.get("KUBETUNE_EXAMPLE_THREADS", "1")))
    trial = kt.init()
    p = trial.params
    pl.seed_everything(int(p.get("seed", 0)), verbose=False)
    x_train, y_train, x_val, y_val = load_data()
    batch = int(p.get("batch_size", 64))
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=batch, shuffle=True)
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=len(x_val))
    momentum = {"momentum": "momentum"} if "momentum" in p else {}
    kube = KubetuneCallback(trial, optimizer_params={"lr": "lr", **momentum})
    trainer = pl.Trainer(
        max_epochs=int(os.environ.get("KUBETUNE_EXAMPLE_MAX_EPOCHS", "-1")),
        callbacks=[kube],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="auto",
        devices=1,
    )
    trainer.fit(DigitsModule(p), train, val, ckpt_path=kube.restore())
    trial.finish()


if __name__ == "__main__":
    main()
