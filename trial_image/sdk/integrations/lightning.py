"""PyTorch Lightning: a ``Checkpoint`` callback that runs a Lightning ``fit`` as a kubetune trial.

::

    import kubetune.trial as kt
    from kubetune.trial.integrations.lightning import KubetuneCallback

    trial = kt.init()
    kube = KubetuneCallback(trial)
    trainer = pl.Trainer(max_epochs=MAX, callbacks=[kube], logger=False)
    trainer.fit(model, datamodule=data, ckpt_path=kube.restore())
    trial.finish()

One kubetune step is one epoch. At the end of every epoch (after validation) the callback
reports the epoch's logged metrics, saves Lightning's own full checkpoint (weights, optimizers,
schedulers, loop progress, RNG-free callback state) through ``trial.save()`` and then advances
the SDK's ``steps()``: at ``stop_at`` that holds for the controller, and a segment that ends sets
``trainer.should_stop``. ``restore()`` hands Lightning the checkpoint the SDK chose (this
trial's own, a promotion's rung checkpoint or a PBT donor's copy) as an ordinary ``ckpt_path``,
so Lightning restores everything itself; afterwards the trial's hyperparameters are written into
the optimizers (``optimizer_params``), which is how a PBT exploit trains on with its new values.

It is a :class:`Checkpoint` subclass so that Lightning calls it after the module's own
``on_train_epoch_end`` (metrics logged there are reported) and does not add its default
``ModelCheckpoint``; add one yourself if you also want local ``.ckpt`` files.

Lightning answers SIGTERM by raising ``SIGTERMException`` after the current batch, which would
end the process without a checkpoint at an epoch boundary. The callback puts the SDK's handler
back when training starts, so a preemption finishes the epoch, saves it and exits with
``EXIT_PREEMPTED`` like any kubetune script (one epoch must fit in the grace period). Single
process training only: multi-process strategies (DDP) are not handled.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from ..checkpoint import CheckpointError
from ..session import BadReportError, Trial
from ._optim import apply_to_optimizer, check_mapping, default_mapping, describe
from ._segment import SegmentDriver

if "pytorch_lightning" not in sys.modules and importlib.util.find_spec("lightning") is not None:
    # The unified ``lightning`` package: its Trainer only accepts its own Callback class.
    from lightning.pytorch.callbacks import Checkpoint  # type: ignore[import-not-found,unused-ignore]
else:
    from pytorch_lightning.callbacks import Checkpoint

log = logging.getLogger("kubetune.trial.lightning")

#: The ``format`` of the state this callback saves; ``restore()`` refuses anything else.
FORMAT = "kubetune.lightning/1"


class KubetuneCallback(Checkpoint):  # type: ignore[misc,unused-ignore]
    """Report, checkpoint and stop a Lightning ``fit`` as one kubetune run segment.

    ``metrics`` maps reported names to Lightning's logged names (``{"val_loss": "val/loss"}``);
    by default every scalar in ``trainer.callback_metrics`` is reported under its own name.
    ``optimizer_params`` maps trial parameters to optimizer param-group keys
    (``{"lr": "lr", "momentum": "momentum"}``); by default ``lr`` when the trial has one.
    ``workdir`` holds the restored ``.ckpt`` file briefly (a temporary folder by default).
    """

    def __init__(
        self,
        trial: Trial,
        *,
        metrics: Mapping[str, str] | None = None,
        optimizer_params: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> None:
        super().__init__()
        self.trial = trial
        self.metrics = dict(metrics) if metrics is not None else None
        self.optimizer_params = (
            dict(optimizer_params)
            if optimizer_params is not None
            else default_mapping(trial.params)
        )
        check_mapping(self.optimizer_params, trial.params, "KubetuneCallback(optimizer_params)")
        self._workdir = workdir
        self._start: int | None = None
        self._restored_file: str | None = None
        self.driver = SegmentDriver(trial)

    # -- restore -------------------------------------------------------------------------------

    def restore(self, map_location: Any = "cpu") -> str | None:
        """The ``ckpt_path`` for ``trainer.fit``: the checkpoint to continue from, or None.

        Must be called (and its result passed to ``fit``) before training starts: the callback
        refuses to train otherwise, since a promoted or exploited trial would silently start
        over and report a fresh run's values as its own.
        """
        state, start = self.trial.restore(map_location=map_location)
        self._start = start
        if state is None:
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            kind = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"the checkpoint at step {start} was not written by the Lightning "
                f"KubetuneCallback (format {kind!r}, expected {FORMAT!r})"
            )
        folder = self._workdir or tempfile.mkdtemp(prefix="kubetune-lightning-")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"restore-step{start}.ckpt")
        with open(path, "wb") as f:
            f.write(state["ckpt"])
        self._restored_file = path
        return path

    # -- Lightning hooks -----------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self._start is None:
            raise RuntimeError(
                "KubetuneCallback: call trainer.fit(..., ckpt_path=callback.restore()) so that "
                "a resumed, promoted or exploited trial continues from its checkpoint"
            )
        if trainer.current_epoch != self._start:
            raise RuntimeError(
                f"KubetuneCallback: Lightning starts at epoch {trainer.current_epoch} but the "
                f"trial restored step {self._start}; pass ckpt_path=callback.restore() to fit "
                "and no other checkpoint"
            )
        self._check_trainer(trainer)
        if self._restored_file is not None:
            shutil.rmtree(os.path.dirname(self._restored_file), ignore_errors=True)
            print(
                f"kubetune: Lightning resumed at epoch {trainer.current_epoch} "
                f"(global step {trainer.global_step})",
                flush=True,
            )
            self._restored_file = None
        if threading.current_thread() is threading.main_thread():
            # Lightning installed its own SIGTERM handler in fit(); ours finishes the epoch.
            self.trial.install_signal_handler()
        self._apply_params(trainer)
        if not self.driver.begin(self._start):
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        step = self.driver.current
        if step is None:
            return  # the segment already ended (e.g. SIGTERM before the first epoch)
        if trainer.current_epoch + 1 != step:
            raise RuntimeError(
                f"KubetuneCallback: Lightning finished epoch {trainer.current_epoch + 1} but the "
                f"trial is at step {step}"
            )
        self.trial.report(step, **self._metrics(trainer))
        self.trial.save(self._snapshot(trainer, step), step)
        params = dict(self.trial.params)
        if self.driver.finish_step(step):
            if self.trial.params != params:  # continued in place with new values
                self._apply_params(trainer)
            self._check_trainer(trainer)
        else:
            trainer.should_stop = True

    # -- helpers -------------------------------------------------------------------------------

    def _check_trainer(self, trainer: Any) -> None:
        """Settings under which Lightning would not stop where the segment does."""
        stop_at = self.trial.stop_at
        max_epochs = trainer.max_epochs
        if max_epochs is not None and max_epochs >= 0 and max_epochs < stop_at:
            raise ValueError(
                f"Trainer(max_epochs={max_epochs}) ends before this segment's stop_at {stop_at}: "
                "set max_epochs to the Study's spec.resource.max (or -1)"
            )
        min_epochs = trainer.min_epochs
        if min_epochs is not None and min_epochs > stop_at:
            raise ValueError(
                f"Trainer(min_epochs={min_epochs}) would train past this segment's stop_at "
                f"{stop_at}: Lightning ignores should_stop before min_epochs; remove min_epochs"
            )
        if trainer.max_steps not in (-1, None):
            raise ValueError(
                f"Trainer(max_steps={trainer.max_steps}): the Study's resource is epochs; "
                "leave max_steps at -1"
            )
        if trainer.limit_val_batches != 0 and trainer.check_val_every_n_epoch not in (1, None):
            raise ValueError(
                f"Trainer(check_val_every_n_epoch={trainer.check_val_every_n_epoch}): validate "
                "every epoch, so that each epoch's report carries that epoch's validation metrics"
            )

    def _apply_params(self, trainer: Any) -> None:
        schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
        for opt in trainer.optimizers:
            changes = apply_to_optimizer(
                opt,
                self.trial.params,
                self.optimizer_params,
                schedulers,
                "KubetuneCallback(optimizer_params)",
            )
            if changes:
                print(f"kubetune: applied trial params to the optimizer: {describe(changes)}")

    def _metrics(self, trainer: Any) -> dict[str, float]:
        logged = trainer.callback_metrics
        if self.metrics is None:
            out: dict[str, float] = {}
            for name, value in logged.items():
                if getattr(value, "numel", lambda: 1)() == 1:
                    out[name] = float(value)
            return out
        missing = [src for src in self.metrics.values() if src not in logged]
        if missing:
            raise BadReportError(
                f"KubetuneCallback(metrics): Lightning logged no {', '.join(map(repr, missing))} "
                f"this epoch (logged: {', '.join(sorted(logged)) or 'nothing'})"
            )
        return {name: float(logged[src]) for name, src in self.metrics.items()}

    def _snapshot(self, trainer: Any, step: int) -> dict[str, Any]:
        """Lightning's own checkpoint of this moment, as bytes, written through a local file.

        ``trainer.save_checkpoint`` is the public way to get everything Lightning restores
        (loop progress included); the file is read back and removed at once.
        """
        fd, path = tempfile.mkstemp(prefix="kubetune-lightning-", suffix=".ckpt")
        os.close(fd)
        try:
            trainer.save_checkpoint(path)
            with open(path, "rb") as f:
                data = f.read()
        finally:
            os.unlink(path)
        return {"format": FORMAT, "epoch": step, "global_step": trainer.global_step, "ckpt": data}
