"""kubetune.trial.rank: which process of a multi-node trial reports and checkpoints."""

from __future__ import annotations

import pytest

from kubetune.trial.rank import is_rank_zero, rank


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 0),
        ({"RANK": "3", "PET_NODE_RANK": "1"}, 3),  # torchrun's global rank wins
        ({"PET_NODE_RANK": "1"}, 1),  # Kubeflow Trainer's torch runtime
        ({"JOB_COMPLETION_INDEX": "2"}, 2),  # an Indexed Job
        ({"OMPI_COMM_WORLD_RANK": "4"}, 4),
        # a JobSet pod: 3 pods before its replicated job, Job index 1 of 2-pod Jobs, pod 1
        (
            {
                "KUBETUNE_RANK_OFFSET": "3",
                "KUBETUNE_JOB_INDEX": "1",
                "KUBETUNE_PODS_PER_JOB": "2",
                "JOB_COMPLETION_INDEX": "1",
            },
            6,
        ),
        ({"KUBETUNE_JOB_INDEX": "0", "KUBETUNE_RANK_OFFSET": "0"}, 0),
    ],
)
def test_rank_from_each_launcher(env: dict[str, str], expected: int) -> None:
    assert rank(env) == expected
    assert is_rank_zero(env) == (expected == 0)


def test_a_rank_that_is_not_a_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="KUBETUNE_JOB_INDEX='x'"):
        rank({"KUBETUNE_JOB_INDEX": "x"})
