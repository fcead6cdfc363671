"""More Studies than pass threads: every Study is reconciled to its end (issue 14).

A Study owns no thread; passes of all Studies share `OperatorSettings.workers` threads. With a
daemon thread per Study (the design before), Studies beyond the pool's size were never
reconciled while the first ones ran.
"""

from __future__ import annotations

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, endpoints, phase, toy_study

pytestmark = pytest.mark.slow


async def test_more_studies_than_workers_all_complete(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    cluster.start_kubelet(SECRETS)
    settings = cluster.start_operator(workers=2, **endpoints(s3_server))
    names = [f"many-{i}" for i in range(6)]
    for name in names:
        study = toy_study(name, s3_server, None, maxTrials=2, parallelism=1)
        study["spec"]["resource"] = {"metric": "step", "min": 1, "max": 2}
        study["spec"]["algorithm"] = {"name": "random", "seed": 1}
        del study["spec"]["checkpoint"]["deleteOnCompletion"]
        await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(
        lambda: all(phase(cluster, n) == "Completed" for n in names),
        300,
        "every Study completed",
    )
    assert settings.pool()._max_workers == 2  # the pool really was smaller than the Studies
    for name in names:
        status = (cluster.study(name) or {})["status"]
        assert status["trialsCompleted"] == 2, (name, status)
        assert status["trials"]["Running"] == 0  # counts of zero are written, not left stale
    assert cluster.kubelet is not None and not cluster.kubelet.errors
