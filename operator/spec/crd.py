"""The CustomResourceDefinitions, generated from the spec model.

`crds/*.yaml` are the rendered output of this module (regenerate with `kubetune crds --write`);
a test fails when they differ, so the files, the chart and the model cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubetune.operator.spec.model import GROUP, VERSION, StudySpec
from kubetune.operator.spec.schema import dataclass_schema

CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "Valid, Running, Completed, Failed, ..."},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "description": "CamelCase machine-readable reason."},
        "message": {"type": "string", "description": "Human-readable details."},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer"},
    },
}

STUDY_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Observed state, written by the operator.",
    "properties": {
        "phase": {
            "type": "string",
            "enum": ["Pending", "Running", "Completed", "Failed", "Invalid"],
        },
        "observedGeneration": {"type": "integer"},
        "conditions": {
            "type": "array",
            "items": CONDITION_SCHEMA,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "trials": {
            "type": "object",
            "description": "Trials by phase.",
            "additionalProperties": {"type": "integer"},
        },
        "trialsRunning": {"type": "integer"},
        "trialsCompleted": {"type": "integer"},
        "trialsFailed": {"type": "integer"},
        "preemptions": {"type": "integer"},
        "bestTrial": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "params": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                "resource": {"type": "integer"},
            },
        },
        "bestObjective": {"type": "string", "description": "Best value, formatted."},
        "paretoFront": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
                },
            },
        },
        "message": {"type": "string"},
        "startTime": {"type": "string", "format": "date-time"},
        "completionTime": {"type": "string", "format": "date-time"},
        "storage": {
            "type": "object",
            "description": "Where this run's data lives (<storage>/<namespace>/<name>/<uid>), "
            "recorded when it started; deletion removes exactly this prefix.",
            "properties": {"prefix": {"type": "string"}},
        },
        "acceptedSpec": {
            "type": "object",
            "description": "The spec (all but budget) the run started with; a restarted "
            "operator keeps running it whatever the spec says now.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
    },
}

TRIAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "description": "Written by the operator: what the trial runs.",
            "properties": {
                "trialId": {"type": "string"},
                "index": {"type": "integer", "minimum": 0},
                "params": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "bracket": {"type": "integer", "minimum": 0},
                "segments": {
                    "type": "array",
                    "description": "Run segments; the last is current. PBT lineage lives here.",
                    "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "phase": {
                    "type": "string",
                    "enum": ["Pending", "Running", "Paused", "Completed", "Stopped", "Failed"],
                },
                "observedGeneration": {"type": "integer"},
                "conditions": {
                    "type": "array",
                    "items": CONDITION_SCHEMA,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                },
                "results": {
                    "type": "object",
                    "description": "Objective values at each milestone, keyed by resource "
                    "(NaN/Infinity as strings).",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "curve": {
                    "type": "object",
                    "description": "Every observed step's metrics (the learning curve).",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "restarts": {"type": "integer"},
                "handle": {
                    "type": "object",
                    "description": "The operator's handle of the running segment (its Job).",
                    "x-kubernetes-preserve-unknown-fields": True,
                },
                "restoreUrl": {"type": "string"},
                "stopRequested": {"type": "string"},
                "events": {"type": "array", "maxItems": 50, "items": {"type": "string"}},
                "lineage": {
                    "type": "array",
                    "description": "PBT: the donor checkpoints this trial was copied from.",
                    "items": {"type": "string"},
                },
                "resource": {"type": "integer"},
                "lastMetric": {"type": "string"},
                "checkpoint": {"type": "string"},
                "preemptions": {"type": "integer"},
                "failure": {
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string"},
                        "exitCode": {"type": "integer"},
                        "message": {"type": "string"},
                    },
                },
                "paramsSummary": {"type": "string"},
                "restored": {
                    "type": "object",
                    "description": "Segment index -> the step its process restored from "
                    "(0: from scratch).",
                    "additionalProperties": {"type": "integer"},
                },
                "exploitsAbandoned": {
                    "type": "array",
                    "description": "PBT exploits that could not be done (the donor checkpoint "
                    "was gone or copies kept failing); the member continued its own.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "donor": {"type": "string"},
                            "resource": {"type": "integer"},
                            "at": {"type": "integer"},
                            "reason": {"type": "string"},
                        },
                    },
                },
                "progressAt": {
                    "type": "number",
                    "description": "When the running segment last reported a new step (Unix "
                    "time): the progress deadline counts from here.",
                },
                "progressStep": {"type": "integer"},
                "launchIntent": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Segment being launched (recorded before its Job exists).",
                },
                "infraErrors": {
                    "type": "integer",
                    "description": "Crashes during infrastructure outages, not charged.",
                },
                "waiting": {
                    "type": "string",
                    "description": "What the trial waits for (e.g. StorageUnavailable).",
                },
            },
        },
    },
}


# Admission (CEL) checks of the trial template: the main Pod Security baseline items, so that the
# API server refuses such a Study before the operator sees it. The operator checks the full policy
# (kubetune.operator.spec.policy) again when it reads the Study and before every Job. CEL sees only
# the fields a schema declares, so the fields the rules read are declared (with their Kubernetes
# types) inside the otherwise free-form pod template; the lists get maxItems so that the rules'
# estimated cost stays within the API server's limits.
MAX_CONTAINERS = 32
MAX_VOLUMES = 128
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
POD_RULES: tuple[tuple[str, str, str], ...] = (
    *(
        (
            f"!has(self.{key}) || !self.{key}",
            f"{key} is not allowed (trial policy, Pod Security baseline)",
            f".{key}",
        )
        for key in ("hostNetwork", "hostPID", "hostIPC")
    ),
    (
        "!has(self.nodeName) || self.nodeName == ''",
        "nodeName is not allowed: it bypasses the scheduler (trial policy)",
        ".nodeName",
    ),
    (
        "!has(self.volumes) || self.volumes.all(v, !has(v.hostPath))",
        "hostPath volumes are not allowed (trial policy, Pod Security baseline)",
        ".volumes",
    ),
    *(
        (
            f"!has(self.{key}) || self.{key}.all(c, !has(c.securityContext) || "
            "!has(c.securityContext.privileged) || !c.securityContext.privileged)",
            f"privileged {key} are not allowed (trial policy, Pod Security baseline)",
            f".{key}",
        )
        for key in CONTAINER_LISTS
    ),
)
# Study fields that only `kubetune run` honours: the operator never requests a Study's URL.
LOCAL_ONLY_RULES = {
    "metrics": ("prometheusUrl", "pushgatewayUrl"),
    "checkpoint": ("endpointUrl",),
}


def _free(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema that keeps unknown fields and declares `schema`'s properties."""
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True, **schema}


def trial_template_schema(base: dict[str, Any]) -> dict[str, Any]:
    """The trialTemplate schema with the fields the admission rules read, and the rules."""
    container = _free(
        {
            "properties": {
                "securityContext": _free({"properties": {"privileged": {"type": "boolean"}}})
            }
        }
    )
    pod: dict[str, Any] = {
        "hostNetwork": {"type": "boolean"},
        "hostPID": {"type": "boolean"},
        "hostIPC": {"type": "boolean"},
        "nodeName": {"type": "string", "maxLength": 253},
        "volumes": {
            "type": "array",
            "maxItems": MAX_VOLUMES,
            "items": _free({"properties": {"hostPath": _free({})}}),
        },
        **{
            key: {"type": "array", "maxItems": MAX_CONTAINERS, "items": container}
            for key in CONTAINER_LISTS
        },
    }
    rules = [
        {"rule": rule, "message": message, "fieldPath": path, "reason": "FieldValueForbidden"}
        for rule, message, path in POD_RULES
    ]
    spec = _free({"properties": pod, "x-kubernetes-validations": rules})
    return {**base, "properties": {"spec": spec}}


def _with_admission_rules(spec_schema: dict[str, Any]) -> dict[str, Any]:
    props = spec_schema["properties"]
    props["trialTemplate"] = trial_template_schema(props["trialTemplate"])
    for section, keys in LOCAL_ONLY_RULES.items():
        rules = props[section].setdefault("x-kubernetes-validations", [])
        for key in keys:
            rules.append(
                {
                    "rule": f"!has(self.{key})",
                    "message": f"{key} is for `kubetune run` only: the operator never requests a "
                    "URL a Study names",
                    "fieldPath": f".{key}",
                    "reason": "FieldValueForbidden",
                }
            )
    return spec_schema


def study_crd() -> dict[str, Any]:
    spec_schema = _with_admission_rules(dataclass_schema(StudySpec))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"studies.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "Study",
                "listKind": "StudyList",
                "plural": "studies",
                "singular": "study",
                "shortNames": ["kts"],
                "categories": ["kubetune"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Algorithm",
                            "type": "string",
                            "jsonPath": ".spec.algorithm.name",
                        },
                        {
                            "name": "Running",
                            "type": "integer",
                            "jsonPath": ".status.trialsRunning",
                        },
                        {
                            "name": "Completed",
                            "type": "integer",
                            "jsonPath": ".status.trialsCompleted",
                        },
                        {"name": "Best", "type": "string", "jsonPath": ".status.bestObjective"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A hyperparameter tuning study.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": STUDY_STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def trial_crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "description": "One configuration of a Study, with its run segments and results.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            **TRIAL_SCHEMA["properties"],
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"trials.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "Trial",
                "listKind": "TrialList",
                "plural": "trials",
                "singular": "trial",
                "shortNames": ["ktt"],
                "categories": ["kubetune"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Study",
                            "type": "string",
                            "jsonPath": ".metadata.labels.kubetune\\.io/study",
                        },
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Params", "type": "string", "jsonPath": ".status.paramsSummary"},
                        {"name": "Resource", "type": "integer", "jsonPath": ".status.resource"},
                        {"name": "Last", "type": "string", "jsonPath": ".status.lastMetric"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


CRD_FILES = {"studies.kubetune.io.yaml": study_crd, "trials.kubetune.io.yaml": trial_crd}


def render(obj: dict[str, Any]) -> str:
    header = "# Generated by `kubetune crds --write` from operator/spec/model.py; do not edit.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, width=100)


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in CRD_FILES.items():
        path = directory / name
        path.write_text(render(build()))
        written.append(path)
    return written
