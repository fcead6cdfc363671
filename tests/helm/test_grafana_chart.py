"""The chart's Grafana dashboard ConfigMap: off by default, the sidecar's label when on, and
the dashboard JSON carried unchanged (its queries are run in tests/tracking/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubetune"


def render(helm: Any, *args: str) -> list[dict[str, Any]]:
    out = helm("template", "kt", str(CHART), "--namespace", "kubetune-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "ConfigMap" and "kubetune.json" in d.get("data", {})]


def test_no_dashboard_by_default(helm: Any) -> None:
    assert dashboards(render(helm)) == []


def test_dashboard_configmap_for_the_grafana_sidecar(helm: Any) -> None:
    (cm,) = dashboards(render(helm, "--set", "grafanaDashboard.enabled=true"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "kubetune-system"
    shipped = json.loads((CHART / "dashboards" / "kubetune.json").read_text())
    assert json.loads(cm["data"]["kubetune.json"]) == shipped
    assert shipped["uid"] == "kubetune-studies" and len(shipped["panels"]) >= 10
    kubernetes_validate.validate(cm, "1.33", strict=True)


def test_dashboard_label_namespace_and_annotations_are_values(helm: Any, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "grafanaDashboard": {
                    "enabled": True,
                    "label": "grafana.example/dashboard",
                    "labelValue": "kubetune",
                    "namespace": "monitoring",
                    "annotations": {"grafana_folder": "ML"},
                }
            }
        )
    )
    (cm,) = dashboards(render(helm, "-f", str(values)))
    assert cm["metadata"]["labels"]["grafana.example/dashboard"] == "kubetune"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "ML"}


def test_a_numeric_label_value_is_refused_with_its_path(helm: Any) -> None:
    proc = helm("template", "kt", str(CHART), "--set", "grafanaDashboard.labelValue=1", check=False)
    assert proc.returncode != 0
    assert "grafanaDashboard" in proc.stderr and "labelValue" in proc.stderr
