"""`kubetune trial -- CMD ARGS...`: run a training command without the SDK (see
`kubetune.trial.runner`). The same module runs in a training image as
`python -m kubetune.trial.runner -- CMD ARGS...`, without the operator's dependencies."""

from __future__ import annotations

import argparse

from kubetune.trial import runner


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runner.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return runner.run(args)
