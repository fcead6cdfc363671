"""The digits MLP (`kubetune.trial.examples.digits`) trained data-parallel on several nodes.

What a multi-node trial script does differently from a single-pod one, in one place:

- every process joins the process group (`torchrun`, or a PyTorchJob's MASTER_ADDR / RANK /
  WORLD_SIZE: the `env://` rendezvous);
- only rank 0 (`kubetune.trial.rank`) restores the trial's checkpoint and broadcasts it, reports
  and saves; the other ranks hold no `Trial` session of their own beyond reading stop_at and
  SIGTERM, so there is one writer of the trial's checkpoints and results;
- a SIGTERM on any node stops every rank at the same epoch (an all-reduce of "go on"), so rank 0
  commits the last finished epoch and the operator resumes the whole trial from it.

Runs on CPU (gloo) or GPU (nccl). Locally: `torchrun --standalone --nproc-per-node=2 -m
kubetune.trial.examples.digits_ddp` with a trial's KUBETUNE_* environment.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import kubetune.trial as kt
from kubetune.trial.env import EXIT_PREEMPTED, TrialEnv
from kubetune.trial.examples.digits import apply_hyperparameters, build_model, load_data
from kubetune.trial.rank import is_rank_zero


def main() -> None:
    torch.set_num_threads(int(os.environ.get("KUBETUNE_EXAMPLE_THREADS", "1")))
    gpu = torch.cuda.is_available()
    dist.init_process_group("nccl" if gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if gpu else "cpu")
    lead = is_rank_zero()
    if lead:
        trial = kt.init()
    else:
        trial = kt.Trial(TrialEnv.from_env(os.environ), serve_metrics=False)
        trial.install_signal_handler()
    p = trial.params
    torch.manual_seed(int(p.get("seed", 0)))
    x_train, y_train, x_val, y_val = (t.to(device) for t in load_data())
    model = build_model(p).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=float(p["lr"]))
    box: list[object] = list(trial.restore(map_location="cpu")) if lead else [None, 0]
    dist.broadcast_object_list(box, src=0)
    state, start = box[0], int(box[1])  # type: ignore[call-overload]
    if isinstance(state, dict):
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        print(f"rank {rank}: resumed from epoch {start}", flush=True)
    apply_hyperparameters(opt, p)
    ddp = DistributedDataParallel(model)
    loss_fn = nn.CrossEntropyLoss()
    batch = int(p.get("batch_size", 64))
    shard = torch.arange(rank, len(x_train), world, device=device)  # this rank's examples
    for epoch in range(start + 1, trial.stop_at + 1):
        go = torch.tensor([0.0 if trial.preempted else 1.0], device=device)
        dist.all_reduce(go, op=dist.ReduceOp.MIN)
        if go.item() == 0.0:
            break  # some node got SIGTERM: everyone stops at the last committed epoch
        ddp.train()
        generator = torch.Generator().manual_seed(epoch)
        order = shard[torch.randperm(len(shard), generator=generator).to(device)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss_fn(ddp(x_train[idx]), y_train[idx]).backward()
            opt.step()
        if lead:
            model.eval()
            with torch.no_grad():
                logits = model(x_val)
                val_loss = float(loss_fn(logits, y_val))
                val_acc = float((logits.argmax(1) == y_val).float().mean())
            trial.report(epoch, val_loss=val_loss, val_acc=val_acc)
            trial.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, epoch)
            print(f"epoch {epoch} val_loss={val_loss:.4f} val_acc={val_acc:.4f}", flush=True)
    dist.destroy_process_group()
    if lead:
        trial.finish()
    sys.exit(EXIT_PREEMPTED if trial.preempted else 0)


if __name__ == "__main__":
    main()
