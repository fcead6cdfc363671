"""Example training scripts that run under kubetune (``python -m kubetune.trial.examples.X``)."""
