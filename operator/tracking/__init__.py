"""Experiment trackers the controller reports a study to (MLflow).

The controller logs, not the trials: a training image needs no tracker client and no tracker
credentials, and the tracker sees exactly what the controller decided on. A tracker is a
`StudyObserver` (controller/reconcile.py) told after every save; nothing it does can fail the
study: failures are retried with a back-off and reported as events.
"""
