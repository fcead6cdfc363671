"""Hugging Face Transformers: a ``TrainerCallback`` that runs ``Trainer.train`` as a kubetune trial.

::

    import kubetune.trial as kt
    from kubetune.trial.integrations.transformers import KubetuneCallback

    trial = kt.init()
    kube = KubetuneCallback(trial)
    args = TrainingArguments(output_dir="out", num_train_epochs=MAX, eval_strategy="epoch",
                             save_strategy="epoch", report_to="none")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[kube])
    trainer.train(resume_from_checkpoint=kube.restore(args.output_dir))
    trial.finish()

One kubetune step is one epoch. At the end of every epoch the callback makes the Trainer
evaluate and save (whatever ``eval_strategy``/``save_strategy`` say), reports the evaluation's
metrics (``eval_loss``, ...), commits the Trainer's own checkpoint folder (weights, optimizer,
scheduler, RNG and trainer state) through ``trial.save()`` and advances the SDK's ``steps()``:
at ``stop_at`` that holds for the controller; a segment that ends sets
``control.should_training_stop``. ``restore()`` unpacks the checkpoint the SDK chose into a
folder for ``resume_from_checkpoint``, so the Trainer restores everything itself; then the
trial's hyperparameters are written into the optimizer and the scheduler's base rates
(``optimizer_params``), which is how a PBT exploit trains on with its new learning rate.

Set ``num_train_epochs`` to the Study's ``spec.resource.max``: the Trainer sizes its learning
rate schedule from it, and every segment of the trial then follows the same schedule.
Checkpoints saved in the middle of an epoch (``save_strategy="steps"``) are not kubetune steps
and stay local; the local ``checkpoint-N`` folder of an epoch is removed once it is committed to
the trial's storage (``keep_local=True`` keeps it).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..checkpoint import CheckpointError
from ..session import Trial
from ._optim import apply_to_optimizer, check_mapping, default_mapping, describe
from ._segment import SegmentDriver

log = logging.getLogger("kubetune.trial.transformers")

#: The ``format`` of the state this callback saves; ``restore()`` refuses anything else.
FORMAT = "kubetune.transformers/1"
RESTORE_DIR = "kubetune-restore"


def pack_folder(folder: str) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path (a Trainer checkpoint is a few files)."""
    files: dict[str, bytes] = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def unpack_folder(files: Mapping[str, bytes], folder: str) -> None:
    """Write ``files`` under a fresh ``folder``; a path escaping it is a corrupt checkpoint."""
    shutil.rmtree(folder, ignore_errors=True)
    base = os.path.realpath(folder)
    for rel, data in files.items():
        path = os.path.realpath(os.path.join(folder, rel))
        if not path.startswith(base + os.sep):
            raise CheckpointError(f"checkpoint file {rel!r} would be written outside {folder}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


class KubetuneCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Report, checkpoint and stop a ``Trainer.train`` as one kubetune run segment.

    ``optimizer_params`` maps trial parameters to optimizer param-group keys
    (``{"lr": "lr", "weight_decay": "weight_decay"}``); by default ``lr`` when the trial has one.
    ``keep_local`` keeps the Trainer's local ``checkpoint-N`` folders after they are committed.
    """

    def __init__(
        self,
        trial: Trial,
        *,
        optimizer_params: Mapping[str, str] | None = None,
        keep_local: bool = False,
    ) -> None:
        self.trial = trial
        self.optimizer_params = (
            dict(optimizer_params)
            if optimizer_params is not None
            else default_mapping(trial.params)
        )
        check_mapping(self.optimizer_params, trial.params, "KubetuneCallback(optimizer_params)")
        self.keep_local = keep_local
        self.driver = SegmentDriver(trial)
        self._start: int | None = None
        self._pending: int | None = None  # the epoch being evaluated and saved
        self._reported: int | None = None
        self._restore_dir: str | None = None

    # -- restore -------------------------------------------------------------------------------

    def restore(self, output_dir: str, map_location: Any = "cpu") -> str | None:
        """The ``resume_from_checkpoint`` for ``trainer.train``: a folder, or None (fresh).

        Must be called (and its result passed to ``train``) before training starts: the
        callback refuses to train otherwise, since a promoted or exploited trial would silently
        start over and report a fresh run's values as its own.
        """
        state, start = self.trial.restore(map_location=map_location)
        self._start = start
        if state is None:
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            kind = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"the checkpoint at step {start} was not written by the Transformers "
                f"KubetuneCallback (format {kind!r}, expected {FORMAT!r})"
            )
        folder = os.path.join(output_dir, RESTORE_DIR)
        unpack_folder(state["files"], folder)
        self._restore_dir = folder
        return folder

    # -- Trainer events ------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._start is None:
            raise RuntimeError(
                "KubetuneCallback: call trainer.train(resume_from_checkpoint="
                "callback.restore(args.output_dir)) so that a resumed, promoted or exploited "
                "trial continues from its checkpoint"
            )
        if args.save_only_model:
            raise ValueError(
                "TrainingArguments(save_only_model=True): kubetune checkpoints must carry the "
                "optimizer and scheduler (promotions and PBT exploits resume from them)"
            )
        if abs(float(state.epoch or 0) - self._start) > 1e-6:
            raise RuntimeError(
                f"KubetuneCallback: the Trainer starts at epoch {state.epoch} but the trial "
                f"restored step {self._start}; pass resume_from_checkpoint=callback.restore(...) "
                "and no other checkpoint"
            )
        self._check_epochs(state)
        if self._restore_dir is not None:
            print(
                f"kubetune: Trainer resumed at epoch {self._start} "
                f"(global step {state.global_step})",
                flush=True,
            )
        self._apply_params(kwargs)
        if not self.driver.begin(self._start):
            control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = self.driver.current
        if step is None:
            return
        epoch = round(float(state.epoch))
        if epoch != step or abs(float(state.epoch) - epoch) > 1e-6:
            raise RuntimeError(
                f"KubetuneCallback: the Trainer ended epoch {state.epoch} but the trial is at "
                f"step {step}"
            )
        self._pending = step
        control.should_evaluate = True
        control.should_save = True

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics: Mapping[str, Any] = kwargs.get("metrics") or {}
        if self._pending is None:
            return  # an evaluation within an epoch: not a kubetune step
        values: dict[str, float] = {}
        for name, value in metrics.items():
            if name == "epoch":
                continue
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                continue  # e.g. a confusion matrix from compute_metrics: not a scalar to publish
        self.trial.report(self._pending, **values)
        self._reported = self._pending

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        step, self._pending = self._pending, None
        if step is None:
            log.info("kept %s local only: saved within an epoch, not at a kubetune step", folder)
            return
        if self._reported != step:
            raise RuntimeError(
                f"KubetuneCallback: epoch {step} was saved without an evaluation to report "
                "(is there an eval_dataset?)"
            )
        if not os.path.isdir(folder):
            raise CheckpointError(f"the Trainer's checkpoint folder {folder} does not exist")
        self.trial.save(
            {
                "format": FORMAT,
                "epoch": step,
                "global_step": state.global_step,
                "files": pack_folder(folder),
            },
            step,
        )
        if not self.keep_local and not args.load_best_model_at_end:
            shutil.rmtree(folder, ignore_errors=True)
        params = dict(self.trial.params)
        if self.driver.finish_step(step):
            if self.trial.params != params:  # continued in place with new values
                self._apply_params(kwargs)
            self._check_epochs(state)
        else:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._restore_dir is not None:
            shutil.rmtree(self._restore_dir, ignore_errors=True)
            self._restore_dir = None
        step = self.driver.current
        if step is not None and not self.trial.preempted:
            raise RuntimeError(
                f"KubetuneCallback: the Trainer finished (epoch {state.epoch}) before this "
                f"segment's stop_at {self.trial.stop_at}: set num_train_epochs to the Study's "
                "spec.resource.max"
            )

    # -- helpers -------------------------------------------------------------------------------

    def _check_epochs(self, state: Any) -> None:
        epochs = state.num_train_epochs
        if epochs is not None and epochs < self.trial.stop_at:
            raise ValueError(
                f"TrainingArguments(num_train_epochs={epochs}) ends before this segment's "
                f"stop_at {self.trial.stop_at}: set it to the Study's spec.resource.max"
            )

    def _apply_params(self, kwargs: Mapping[str, Any]) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is None:
            raise RuntimeError("KubetuneCallback: the Trainer passed no optimizer to callbacks")
        scheduler = kwargs.get("lr_scheduler")
        changes = apply_to_optimizer(
            optimizer,
            self.trial.params,
            self.optimizer_params,
            [scheduler] if scheduler is not None else [],
            "KubetuneCallback(optimizer_params)",
        )
        if changes:
            print(f"kubetune: applied trial params to the optimizer: {describe(changes)}")
