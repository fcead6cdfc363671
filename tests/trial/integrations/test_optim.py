"""Trial params into a (restored) optimizer: values, scheduler base rates, and named errors."""

from __future__ import annotations

import pytest
import torch

from kubetune.trial.integrations._optim import apply_to_optimizer, default_mapping, describe


def _opt(lr: float = 0.1) -> torch.optim.SGD:
    w = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [w]}, {"params": [b]}], lr=lr, momentum=0.5)


def test_every_group_takes_the_trial_value_and_changes_are_listed() -> None:
    opt = _opt()
    changes = apply_to_optimizer(opt, {"lr": 0.02, "mom": 0.9}, {"lr": "lr", "mom": "momentum"})
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.02]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9]
    assert [(c.param, c.key, c.group) for c in changes] == [
        ("lr", "lr", 0), ("lr", "lr", 1), ("mom", "momentum", 0), ("mom", "momentum", 1)
    ]  # fmt: skip
    assert describe(changes[:1]) == "lr 0.1 -> 0.02 (group 0)"
    # Applying the same values again changes nothing, and says so.
    assert apply_to_optimizer(opt, {"lr": 0.02}, {"lr": "lr"}) == []


def test_a_scheduler_keeps_its_factor_and_takes_the_new_base_rate() -> None:
    opt = _opt(lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    apply_to_optimizer(opt, {"lr": 0.4}, {"lr": "lr"}, [sched])
    assert sched.base_lrs == [0.4, 0.4]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # 0.4 x the schedule's 0.25
    opt.step()
    sched.step()  # the scheduler now computes from the new base: 0.4 x 0.5^3
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_bad_mappings_name_the_parameter_or_key() -> None:
    with pytest.raises(ValueError, match="'lrr' is not a parameter of this trial"):
        apply_to_optimizer(_opt(), {"lr": 0.1}, {"lrr": "lr"})
    with pytest.raises(ValueError, match="has no 'betas2' in its param groups"):
        apply_to_optimizer(_opt(), {"b": 0.9}, {"b": "betas2"})
    with pytest.raises(ValueError, match="parameter 'act' is 'relu', not a number"):
        apply_to_optimizer(_opt(), {"act": "relu"}, {"act": "lr"})


def test_default_mapping_is_lr_only_when_the_trial_has_one() -> None:
    assert default_mapping({"lr": 0.1, "momentum": 0.9}) == {"lr": "lr"}
    assert default_mapping({"learning_rate": 0.1}) == {}
