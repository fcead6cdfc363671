"""A one-layer GPT-2 built from its config, trained with Hugging Face's ``Trainer`` under kubetune.

``python -m kubetune.trial.examples.tiny_gpt2`` with params ``lr`` (AdamW; applied to the
restored optimizer after a PBT exploit), ``weight_decay`` (fixed per trial),
``batch_size`` and ``seed``. No download: the model is ``GPT2LMHeadModel(GPT2Config(...))`` with
a 24-token vocabulary, and the data set is made here: sequences that count up from a random
token in a random stride (mod 24), so the next token is predictable from the previous two and
``eval_loss`` falls from log(24) towards 0 as the model learns the rule. One epoch is 16 steps of
16 sequences (about a second on one CPU core). ``KUBETUNE_EXAMPLE_MAX_EPOCHS`` is
``num_train_epochs`` (the Study's ``spec.resource.max``, default 8), so every segment follows the
same learning-rate schedule. The ``KubetuneCallback`` reports ``eval_loss`` each epoch,
checkpoints the Trainer's state through the SDK and stops at the segment's ``stop_at``.
"""

from __future__ import annotations

import os
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

import kubetune.trial as kt
from kubetune.trial.integrations.transformers import KubetuneCallback

VOCAB = 24
LENGTH = 12
DATA_SEED = 4321  # fixed: every trial sees the same sequences


class CountingSequences(torch.utils.data.Dataset):
    """``n`` sequences ``a, a+d, a+2d, ...`` (mod VOCAB): inputs are their own labels."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        stride = torch.randint(1, 4, (n, 1), generator=g)
        self.ids = (start + stride * torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def build_model(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def main() -> None:
    torch.set_num_threads(int(os.environ.get("KUBETUNE_EXAMPLE_THREADS", "1")))
    hf_logging.set_verbosity_warning()
    trial = kt.init()
    p = trial.params
    seed = int(p.get("seed", 0))
    output_dir = os.environ.get("KUBETUNE_EXAMPLE_OUTPUT_DIR") or tempfile.mkdtemp(
        prefix="tiny-gpt2-"
    )
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=int(os.environ.get("KUBETUNE_EXAMPLE_MAX_EPOCHS", "8")),
        per_device_train_batch_size=int(p.get("batch_size", 16)),
        per_device_eval_batch_size=64,
        learning_rate=float(p["lr"]),
        weight_decay=float(p.get("weight_decay", 0.0)),
        lr_scheduler_type="constant",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    # Only lr is written into the restored optimizer: the Trainer keeps weight decay off for
    # biases and LayerNorm (a second param group), which a blanket weight_decay would undo.
    kube = KubetuneCallback(trial, optimizer_params={"lr": "lr"})
    trainer = Trainer(
        model=build_model(seed),
        args=args,
        train_dataset=CountingSequences(256, DATA_SEED),
        eval_dataset=CountingSequences(64, DATA_SEED + 1),
        callbacks=[kube],
    )
    trainer.train(resume_from_checkpoint=kube.restore(output_dir))
    trial.finish()


if __name__ == "__main__":
    main()
