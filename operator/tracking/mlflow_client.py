"""A small client of MLflow's REST API (the part the controller uses), over urllib.

The operator image carries no `mlflow` package (hundreds of MB of dependencies for a handful
of JSON calls); the calls here are MLflow's documented REST endpoints under /api/2.0/mlflow/.
Every failure is an `MlflowError` naming the endpoint and the reason; the logger decides what
to do with it.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

from kubetune.operator.tracking.mlflow_content import Metric

# MLflow's limits per log-batch request.
BATCH_METRICS = 1000
BATCH_PARAMS = 100
BATCH_TAGS = 100


class MlflowError(Exception):
    """A request to the tracking server failed (unreachable, refused, or an API error)."""

    def __init__(self, endpoint: str, reason: str, code: str = "") -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.code = code  # MLflow's error_code, e.g. RESOURCE_DOES_NOT_EXIST


def _number(value: float) -> float | str:
    """JSON has no NaN/Infinity; MLflow's protobuf JSON reads them as these strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class MlflowRest:
    def __init__(self, tracking_uri: str, timeout: float = 5.0) -> None:
        self.base = tracking_uri.rstrip("/") + "/api/2.0/mlflow/"
        self.timeout = timeout

    def _call(self, endpoint: str, body: dict[str, Any] | None = None, query: str = "") -> Any:
        url = self.base + endpoint + (f"?{query}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            # Only MLflow's own error (code and message) is repeated; any other body (a proxy's
            # page) stays out of events and logs.
            reason, code = f"HTTP {exc.code}", ""
            try:
                parsed = json.loads(exc.read()[:4000])
                code = str(parsed.get("error_code", ""))
                reason += f" {code}: {str(parsed.get('message', ''))[:300]}"
            except (ValueError, AttributeError, OSError):
                pass
            raise MlflowError(endpoint, reason, code) from exc
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise MlflowError(endpoint, f"cannot reach {self.base}: {why}") from exc
        try:
            return json.loads(text or b"{}")
        except ValueError as exc:
            raise MlflowError(endpoint, "the answer is not JSON (not an MLflow server?)") from exc

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created if it does not exist."""
        try:
            found = self._call(
                "experiments/get-by-name", query=urllib.parse.urlencode({"experiment_name": name})
            )
            return str(found["experiment"]["experiment_id"])
        except MlflowError as exc:
            if exc.code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            return str(self._call("experiments/create", {"name": name})["experiment_id"])
        except MlflowError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile by another controller
                raise
            found = self._call(
                "experiments/get-by-name", query=urllib.parse.urlencode({"experiment_name": name})
            )
            return str(found["experiment"]["experiment_id"])

    def search_runs(self, experiment_id: str, tag: str, value: str) -> Iterator[dict[str, Any]]:
        """Every run of the experiment whose tag `tag` equals `value`, page by page."""
        escaped = value.replace("'", "\\'")
        body: dict[str, Any] = {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`{tag}` = '{escaped}'",
            "max_results": 1000,
        }
        while True:
            page = self._call("runs/search", body)
            yield from page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return
            body["page_token"] = token

    def create_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        answer = self._call(
            "runs/create",
            {
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )
        return str(answer["run"]["info"]["run_id"])

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Send in as many requests as MLflow's per-request limits need; tags go in the last
        one, so a tag that records progress (the last step sent) is never ahead of the data."""
        now = int(time.time() * 1000)
        metric_rows = [
            {"key": m.key, "value": _number(m.value), "timestamp": now, "step": m.step}
            for m in metrics
        ]
        param_rows = [{"key": k, "value": v} for k, v in (params or {}).items()]
        tag_rows = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        for i in range(0, len(metric_rows), BATCH_METRICS):
            self._call(
                "runs/log-batch", {"run_id": run_id, "metrics": metric_rows[i : i + BATCH_METRICS]}
            )
        for i in range(0, len(param_rows), BATCH_PARAMS):
            self._call(
                "runs/log-batch", {"run_id": run_id, "params": param_rows[i : i + BATCH_PARAMS]}
            )
        for i in range(0, len(tag_rows), BATCH_TAGS):
            self._call("runs/log-batch", {"run_id": run_id, "tags": tag_rows[i : i + BATCH_TAGS]})

    def set_status(self, run_id: str, status: str, ended: bool) -> None:
        body: dict[str, Any] = {"run_id": run_id, "status": status}
        if ended:
            body["end_time"] = int(time.time() * 1000)
        self._call("runs/update", body)
