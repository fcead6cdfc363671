"""Which process of a multi-node trial this is: only rank 0 reports and checkpoints.

A trial may run on several pods (a JobSet, a TrainJob, a PyTorchJob) and each of them gets the
same trial environment. They all restore the same checkpoint (the newest of the trial, which
only rank 0 writes) and train together, but only the rank-0 process calls ``trial.report`` and
``trial.save``; two writers would race on the trial's checkpoints and results. ``rank()`` reads
the rank from whatever launched the process, first match wins:

1. ``RANK`` (torchrun, and the Kubeflow Training Operator in every PyTorchJob pod);
2. ``KUBETUNE_JOB_INDEX`` + ``KUBETUNE_RANK_OFFSET`` (kubetune in every JobSet pod: the pods of
   the replicated jobs before this one, plus this Job's index times its pods, plus
   ``JOB_COMPLETION_INDEX`` for an Indexed Job of several pods);
3. ``PET_NODE_RANK`` (Kubeflow Trainer's torch runtime, torchrun's node rank);
4. ``JOB_COMPLETION_INDEX`` (an Indexed Job), ``OMPI_COMM_WORLD_RANK``, ``PMI_RANK`` (MPI);
5. otherwise 0: a single process is rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PLAIN_RANKS = ("PET_NODE_RANK", "JOB_COMPLETION_INDEX", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def _int(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number (a process rank)") from None


def rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank in the trial (see the module docstring for where it comes from)."""
    env = os.environ if environ is None else environ
    if env.get("RANK", "") != "":
        return _int(env, "RANK")
    if env.get("KUBETUNE_JOB_INDEX", "") != "":
        per_job = _int(env, "KUBETUNE_PODS_PER_JOB") if env.get("KUBETUNE_PODS_PER_JOB") else 1
        offset = _int(env, "KUBETUNE_RANK_OFFSET") if env.get("KUBETUNE_RANK_OFFSET") else 0
        index = _int(env, "JOB_COMPLETION_INDEX") if env.get("JOB_COMPLETION_INDEX") else 0
        return offset + _int(env, "KUBETUNE_JOB_INDEX") * per_job + index
    for name in PLAIN_RANKS:
        if env.get(name, "") != "":
            return _int(env, name)
    return 0


def is_rank_zero(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is the one that reports and checkpoints."""
    return rank(environ) == 0


__all__ = ["is_rank_zero", "rank"]
