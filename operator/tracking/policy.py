"""Which tracking servers the operator may connect to for a Study, and its trackers there.

A Study's author is a tenant; the operator runs with the platform's network reach. Like every
URL a Study names (see LOCAL_ONLY_URLS in backends/k8s/handlers.py), spec.tracking.mlflow's
trackingUri is not simply requested: the operator connects only to a URI on its allow-list
(operator setting `mlflow_tracking_uris`), compared after normalising case and trailing slash,
so a Study cannot point the operator at an internal service. `kubetune run` connects to any:
that process is the user's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from kubetune.operator.controller.reconcile import EventSink, StudyObserver
from kubetune.operator.spec.model import Study, StudySpec
from kubetune.operator.spec.schema import SpecError
from kubetune.operator.tracking.mlflow_logger import mlflow_logger

FIELD = "spec.tracking.mlflow.trackingUri"


def normalise(uri: str) -> str:
    """Scheme and host in lower case, no trailing slash: one spelling per server."""
    parts = urlsplit(uri.strip())
    path = parts.path.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


def mlflow_uri_errors(spec: StudySpec, allowed: Sequence[str]) -> list[SpecError]:
    """A SpecError when the Study names a tracking server the operator does not offer."""
    mlflow = spec.tracking.mlflow
    if mlflow is None:
        return []
    offered = {normalise(u) for u in allowed}
    if normalise(mlflow.tracking_uri) in offered:
        return []
    listed = ", ".join(sorted(offered)) or "none"
    return [
        SpecError(
            FIELD,
            f"{mlflow.tracking_uri!r} is not on the operator's list of MLflow tracking servers "
            f"(the operator connects to no other URL a Study names); allowed: {listed}",
        )
    ]


def cluster_trackers(
    study: Study, namespace: str, uid: str, on_event: EventSink
) -> list[StudyObserver]:
    """The observers of an accepted Study (its URI was checked by `mlflow_uri_errors`); runs are
    identified by the Study's UID, the default experiment names its namespace."""
    name = study.name
    logger = mlflow_logger(
        study.spec, name, uid, on_event, experiment=f"kubetune/{namespace}/{name}"
    )
    return [logger] if logger is not None else []
