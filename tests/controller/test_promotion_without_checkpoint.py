"""An ASHA promotion of a trial that never saved a checkpoint retrains it, visibly.

The rule: the promotion stands (the trial earned it), the segment starts from scratch, and the
trial says so: a `CheckpointMissing` event naming the step it should have restored, and
`restored` 0 for that segment. Never a silent fresh start recorded as a restore.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))

from test_local_run import run_cli, toy_study, trials_of, write


def test_a_promotion_without_a_checkpoint_retrains_and_says_so(tmp_path: Path) -> None:
    doc = toy_study(env={"TOY_NO_SAVE": "1"})
    out = tmp_path / "out"
    proc = run_cli(write(tmp_path, doc), out, "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    promoted = [t for t in trials_of(out) if len(t["segments"]) > 1]
    assert promoted
    for t in promoted:
        for k, seg in enumerate(t["segments"][1:], start=1):
            assert t["restored"][str(k)] == 0  # nothing to restore: a fresh start, recorded
            assert any(
                e.startswith("CheckpointMissing:")
                and f"step={seg['start']} is gone; retraining from scratch" in e
                for e in t["events"]
            ), t["events"]
        assert 9 in {int(s) for s in t["results"]} or t["phase"] != "Completed"
