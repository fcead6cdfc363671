"""`kubetune operator`: run the Kubernetes operator (kopf under the hood).

Honours KUBECONFIG / in-cluster config, watches all namespaces or the given ones, serves its own
Prometheus metrics on --metrics-port and kopf's liveness probe on --health-port (/healthz).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re
import sys
from typing import TYPE_CHECKING

import yaml
from prometheus_client import start_http_server

from kubetune.operator.backends.k8s.storage_access import StorageAccess
from kubetune.operator.spec.policy import PolicyConfig

if TYPE_CHECKING:
    from kubetune.operator.backends.k8s.handlers import OperatorSettings


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--namespace", action="append", default=[], help="watch NS (repeatable)")
    p.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--metrics-port", type=int, default=8080, help="operator metrics port")
    p.add_argument("--health-port", type=int, default=8081, help="/healthz port")
    p.add_argument("--peering", default="", help="kopf peering name (2 replicas); none: standalone")
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; default: random per process, so replicas never tie",
    )
    p.add_argument("--prometheus-url", default=env("KUBETUNE_PROMETHEUS_URL", ""))
    p.add_argument(
        "--prometheus-endpoint",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a Prometheus a Study may choose by name (spec.metrics.prometheus); repeatable",
    )
    p.add_argument("--pushgateway-url", default=env("KUBETUNE_PUSHGATEWAY_URL", ""))
    p.add_argument(
        "--trial-policy",
        default=env("KUBETUNE_TRIAL_POLICY", ""),
        metavar="JSON|FILE",
        help="the trial-template policy, inline JSON or a YAML file (chart trialPolicy: level, "
        "allowedServiceAccounts, allowNodeName, allowedSecrets, namespaces); "
        "default: the baseline level",
    )
    p.add_argument(
        "--checkpoint-storage",
        default=env("KUBETUNE_CHECKPOINT_STORAGE", ""),
        help="default checkpoint root when a Study leaves spec.checkpoint.storage empty",
    )
    p.add_argument(
        "--checkpoint-secret",
        default=env("KUBETUNE_CHECKPOINT_SECRET", ""),
        help="the operator's own storage Secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), given "
        "to trials by secretKeyRef in namespaces that use the operator's credentials",
    )
    p.add_argument(
        "--storage-access",
        default=env("KUBETUNE_STORAGE_ACCESS", ""),
        metavar="JSON|FILE",
        help="whose credentials reach a Study's storage, inline JSON or a YAML file (chart "
        "checkpoint.*: secretName, secretNames, allowedPrefixes, useOperatorCredentials, "
        "namespaces, listedNamespacesOnly); default: a Study's s3 storage is reached with the "
        "Secret it names in its own namespace",
    )
    p.add_argument("--s3-endpoint-url", default=env("KUBETUNE_S3_ENDPOINT_URL", ""))
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="seconds between two passes of a Study when nothing wakes it earlier (a change to "
        "the Study or one of its Jobs or Pods does); bounds how late a milestone reported "
        "through Prometheus or storage is seen",
    )
    p.add_argument(
        "--resync",
        type=float,
        default=300.0,
        help="seconds between two listings of a Study's Jobs and Pods from the API; passes "
        "otherwise read them from the operator's watch-fed index (a safety net: drift is an "
        "IndexDrift event)",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        help="serve the read-only web dashboard of the watched Studies on this port (0: off)",
    )
    p.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="address the dashboard binds (the chart sets 0.0.0.0 behind its Service)",
    )
    p.add_argument(
        "--mlflow-tracking-uri",
        action="append",
        default=[],
        metavar="URL",
        help="an MLflow tracking server Studies may log to (spec.tracking.mlflow.trackingUri; "
        "repeatable); the operator connects to no other tracking URL a Study names",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=8,
        help="threads running passes, shared by all Studies (one pass of a Study at a time)",
    )


def prometheus_endpoints(values: list[str]) -> dict[str, str]:
    """NAME=URL flags as a mapping (argparse.ArgumentTypeError on a malformed one)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise argparse.ArgumentTypeError(f"--prometheus-endpoint {value!r}: want NAME=URL")
        out[name] = url
    return out


def trial_policy(value: str) -> PolicyConfig:
    """`--trial-policy`: inline JSON/YAML (`{...}`, what the chart passes from its `trialPolicy`)
    or the path of a YAML file; empty: the default (baseline) policy."""
    if not value:
        return PolicyConfig()
    data = _json_or_file("--trial-policy", value)
    try:
        return PolicyConfig.from_dict(data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise argparse.ArgumentTypeError(f"--trial-policy: {exc}") from exc


def _json_or_file(flag: str, value: str) -> dict[str, object]:
    """A mapping from inline JSON/YAML (`{...}`, what the chart passes) or a YAML file."""
    try:
        if value.lstrip().startswith("{"):
            data = yaml.safe_load(value)
        else:
            with open(value) as f:
                data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{flag}: not YAML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError(f"{flag}: want a mapping")
    return data


def storage_access(value: str) -> StorageAccess:
    """`--storage-access`: the per-namespace storage credential rules; empty: the defaults."""
    if not value:
        return StorageAccess()
    data = _json_or_file("--storage-access", value)
    try:
        return StorageAccess.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"--storage-access: {exc}") from exc


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    from kubetune.operator.backends.k8s.handlers import OperatorSettings

    return OperatorSettings(
        prometheus_url=args.prometheus_url,
        prometheus_endpoints=prometheus_endpoints(args.prometheus_endpoint),
        pushgateway_url=args.pushgateway_url,
        checkpoint_storage=args.checkpoint_storage,
        checkpoint_secret=args.checkpoint_secret,
        s3_endpoint_url=args.s3_endpoint_url,
        interval=args.interval,
        workers=args.workers,
        resync=args.resync,
        peering_priority=args.priority or random.SystemRandom().randint(1, 2**30),
        trial_policy=trial_policy(args.trial_policy),
        storage_access=storage_access(args.storage_access),
        mlflow_tracking_uris=mlflow_tracking_uris(args.mlflow_tracking_uri),
    )


def mlflow_tracking_uris(values: list[str]) -> tuple[str, ...]:
    """`--mlflow-tracking-uri` flags, each held to the pattern a Study's URI must match (an entry
    no Study could name is a typo the operator should not start with)."""
    from kubetune.operator.spec.model import TRACKING_URI_PATTERN

    for value in values:
        if not re.fullmatch(TRACKING_URI_PATTERN, value):
            raise argparse.ArgumentTypeError(
                f"--mlflow-tracking-uri {value!r}: want an http:// or https:// URL without "
                "credentials, query or fragment"
            )
    return tuple(values)


def run(args: argparse.Namespace) -> int:
    import kopf

    from kubetune.operator.backends.k8s.handlers import register
    from kubetune.operator.backends.k8s.operator_metrics import OperatorMetrics

    try:
        settings = settings_from_args(args)
    except (argparse.ArgumentTypeError, OSError) as exc:
        print(f"kubetune operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    metrics = OperatorMetrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics.registry)
    settings.metrics = metrics
    if args.dashboard_port:
        code = _start_dashboard(args)
        if code:
            return code
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    clusterwide = args.all_namespaces or not args.namespace
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                clusterwide=clusterwide,
                namespaces=[] if clusterwide else list(args.namespace),
                standalone=not args.peering,
                peering_name=args.peering or None,
                liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
                if args.health_port
                else None,
            )
        )
    except KeyboardInterrupt:
        pass
    finally:
        settings.close()
    return 0


def _start_dashboard(args: argparse.Namespace) -> int:
    """The dashboard over the watched namespaces' Studies, in a thread; an exit code when it
    cannot start (said on stderr)."""
    from kubetune.client.cluster import ClusterCatalog
    from kubetune.operator.backends.k8s.api import KubeApi
    from kubetune.operator.dashboard.server import start

    namespaces = [] if args.all_namespaces else list(args.namespace)
    try:
        api = KubeApi.connect(user_agent="kubetune-dashboard")
        server = start(ClusterCatalog(api, namespaces), args.dashboard_host, args.dashboard_port)
    except (OSError, FileNotFoundError) as exc:
        print(f"kubetune operator: --dashboard-port {args.dashboard_port}: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("kubetune.dashboard").info("dashboard at %s", server.url)
    return 0
