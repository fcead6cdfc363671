"""Drive ``Trial.steps()`` from a framework's epoch-end callback instead of a ``for`` loop.

A framework owns its training loop, so the integration cannot write ``for epoch in
trial.steps(start)``. It holds the generator instead and advances it once per finished epoch,
after that epoch was reported and saved: advancing past ``stop_at`` is where the SDK holds for
the controller's decision, and a generator that ends (``stop_at`` without a continuation, or
SIGTERM) is the framework's signal to stop. Reusing the generator keeps one implementation of
the hold/continue/preemption rules for plain scripts and framework callbacks alike.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..session import Trial


class SegmentDriver:
    """The step the framework is training now, and whether the segment goes on after it."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self._steps: Iterator[int] | None = None
        #: The step being trained now (the next one to report), or None once the segment ended.
        self.current: int | None = None

    def begin(self, start: int) -> bool:
        """Start after ``start`` (the restored step); False when there is nothing to train."""
        self._steps = self.trial.steps(start)
        return self._advance()

    def finish_step(self, step: int) -> bool:
        """``step`` is reported and saved: True to train the next one, False to stop now.

        At ``stop_at`` this may block while the SDK holds for a continue-in-place decision.
        """
        if self.current is None:
            raise RuntimeError(f"kubetune: step {step} finished after the segment had ended")
        if step != self.current:
            raise RuntimeError(
                f"kubetune: the framework finished step {step} but the trial is at step "
                f"{self.current}; was the training state restored from a checkpoint other than "
                "the one the integration's restore() returned?"
            )
        return self._advance()

    def _advance(self) -> bool:
        assert self._steps is not None
        try:
            self.current = next(self._steps)
        except StopIteration:
            self.current = None
            self._steps = None
            return False
        return True
