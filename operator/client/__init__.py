"""kubetune.client: create, follow and read Studies from Python, on a cluster or in a run folder.

`open_study(target)` gives a `StudyClient` over a run folder (`RunDirSource`) or a cluster Study
(`ClusterSource`); both hand back the same records (`StudyInfo`, `TrialInfo`, `EventInfo`).
`create_study(...)` submits a Study (a dict or the spec dataclasses) to a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kubetune.client.records import (
    EventInfo,
    ObjectiveInfo,
    SegmentInfo,
    StudyInfo,
    TrialInfo,
)
from kubetune.client.rundir import RunDirSource
from kubetune.client.source import Snapshot, SourceError, StudySource
from kubetune.client.study import StudyClient

# A Study's name is a DNS label; anything else is a path.
STUDY_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def open_study(
    target: str | Path,
    *,
    namespace: str = "default",
    study_file: str | Path | None = None,
    host: str = "",
) -> StudyClient:
    """A run folder when `target` is a folder, else the Study of that name in `namespace` on
    the cluster of the kubeconfig (or `host`, an API server URL)."""
    if Path(target).is_dir() or not STUDY_NAME.fullmatch(str(target)):
        return StudyClient(RunDirSource(target, study_file))  # SourceError when not a folder
    from kubetune.client.cluster import ClusterSource

    return StudyClient(ClusterSource(str(target), namespace, host=host))


def create_study(study: Any, *, namespace: str = "default", host: str = "") -> StudyClient:
    """Validate `study` (a dict, or a `kubetune.operator.spec.model.Study`) and create it on the
    cluster; the client of the new Study."""
    from kubetune.client.cluster import ClusterSource, submit

    name = submit(study, namespace=namespace, host=host)
    return StudyClient(ClusterSource(name, namespace, host=host))


__all__ = [
    "EventInfo",
    "ObjectiveInfo",
    "RunDirSource",
    "SegmentInfo",
    "Snapshot",
    "SourceError",
    "StudyClient",
    "StudyInfo",
    "StudySource",
    "TrialInfo",
    "create_study",
    "open_study",
]
