"""Whose credentials reach a Study's checkpoint storage, and where a namespace may point it.

The operator serves many tenants from one process, so it must never lend its own storage
credentials to a Study: a Study in namespace A that names namespace B's bucket would otherwise
read, overwrite or delete B's data through the operator. The rules, configured by the platform
(chart `checkpoint.*`, `--storage-access`):

- An s3:// Study is reached with the credentials in a Secret of the Study's own namespace: the one
  it names (`spec.checkpoint.secretName`) or the namespace's default name. The operator reads that
  Secret through the API (RBAC: `get` on those Secret names in onboarded namespaces only) and uses
  it for everything it does on the Study's behalf; trials get the same Secret by `secretKeyRef`.
- The operator's own credentials (ambient: its environment or workload identity) serve a Study
  only in a namespace the platform opted in (`useOperatorCredentials`), and only when the Study
  names no Secret. gs:// storage has no Secret form here, so it needs that opt-in.
- A namespace may be pinned to storage prefixes (`allowedPrefixes`): a Study whose storage lies
  elsewhere is refused at validation, naming `spec.checkpoint.storage` and the allowed prefixes.
- Before the first trial starts, the operator proves the credentials work on the run's prefix
  (write, read, delete one marker object); a refusal is a condition and an event, and the Study
  waits, retried every pass, instead of starting trials that cannot checkpoint.

Messages carry the operator's own words (`access denied`, `not found`), never a server's response
text.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubetune.operator.backends.k8s.api import ApiError, KubeApi
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.spec.model import GROUP, VERSION
from kubetune.operator.spec.schema import SpecError

KEY_ID = "AWS_ACCESS_KEY_ID"
KEY_SECRET = "AWS_SECRET_ACCESS_KEY"
KEY_TOKEN = "AWS_SESSION_TOKEN"  # optional (temporary credentials)
SECRET_SCHEMES = ("s3", "s3a")  # storage reached with a tenant Secret's keys
OPERATOR_ONLY_SCHEMES = ("gs", "gcs")  # only the operator's ambient identity reaches these
PROBE_NAME = ".kubetune-access-check"
CHART_HINT = "chart checkpoint.namespaces"


class StorageUnavailable(Exception):
    """The Study's storage cannot be reached with its namespace's credentials (yet)."""

    def __init__(self, message: str, path: str = "spec.checkpoint.secretName") -> None:
        super().__init__(message)
        self.path = path  # the Study field the problem is reported on


@dataclass(frozen=True)
class NamespaceStorage:
    """The storage rules of one namespace."""

    secret_name: str = ""  # the Secret used when a Study names none
    secret_names: tuple[str, ...] = ()  # further Secrets a Study of the namespace may name
    allowed_prefixes: tuple[str, ...] = ()  # empty: any storage URL
    use_operator_credentials: bool = False

    @property
    def readable_secrets(self) -> tuple[str, ...]:
        """The Secret names the operator may read in this namespace (its RBAC resourceNames)."""
        names = [self.secret_name, *self.secret_names]
        return tuple(dict.fromkeys(n for n in names if n))


_KEYS = {
    "secretName": "secret_name",
    "secretNames": "secret_names",
    "allowedPrefixes": "allowed_prefixes",
    "useOperatorCredentials": "use_operator_credentials",
}


def _namespace_rules(
    base: NamespaceStorage, data: Mapping[str, Any], where: str
) -> NamespaceStorage:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: want a mapping")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            raise ValueError(f"{where}.{key}: unknown key; known: {', '.join(_KEYS)}")
        attr = _KEYS[key]
        if attr == "use_operator_credentials":
            if not isinstance(value, bool):
                raise ValueError(f"{where}.{key}: want true or false")
            changes[attr] = value
        elif attr == "secret_name":
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}.{key}: want a Secret name")
            changes[attr] = value or ""
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{where}.{key}: want a list of non-empty strings")
            if attr == "allowed_prefixes":
                for v in value:
                    problem = _url_problem(v)
                    if problem:
                        raise ValueError(f"{where}.{key}: {v!r}: {problem}")
            changes[attr] = tuple(value)
    return replace(base, **changes)


@dataclass(frozen=True)
class StorageAccess:
    """The platform's storage rules: defaults, and per-namespace overrides."""

    default: NamespaceStorage = field(default_factory=NamespaceStorage)
    namespaces: Mapping[str, NamespaceStorage] = field(default_factory=dict)
    # True (what the chart passes): the operator may read Secrets only in the listed namespaces,
    # as its RBAC allows; elsewhere a Study gets a clear error instead of a 403.
    listed_only: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StorageAccess:
        """From the chart's JSON (`--storage-access`); ValueError names the offending key."""
        data = dict(data)
        namespaces = data.pop("namespaces", None) or {}
        listed_only = data.pop("listedNamespacesOnly", False)
        if not isinstance(listed_only, bool):
            raise ValueError("listedNamespacesOnly: want true or false")
        default = _namespace_rules(NamespaceStorage(), data, "storage access")
        if not isinstance(namespaces, Mapping):
            raise ValueError("namespaces: want a mapping of namespace to rules")
        rules = {
            str(ns): _namespace_rules(default, over or {}, f"namespaces.{ns}")
            for ns, over in namespaces.items()
        }
        return cls(default=default, namespaces=rules, listed_only=listed_only)

    def for_namespace(self, namespace: str) -> NamespaceStorage:
        return self.namespaces.get(namespace, self.default)

    def onboarded(self, namespace: str) -> bool:
        return not self.listed_only or namespace in self.namespaces


# ---------------------------------------------------------------------------------- prefixes


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _segments(url: str) -> tuple[str, list[str]]:
    """(scheme, path segments) of a storage URL; an absolute path is a file:// URL."""
    scheme = _scheme(url)
    rest = url.split("://", 1)[1] if "://" in url else url
    return scheme, [s for s in rest.split("/") if s]


def _url_problem(url: str) -> str:
    if "://" not in url and not url.startswith("/"):
        return "want a URL such as s3://bucket/prefix"
    _, parts = _segments(url)
    if any(p in (".", "..") for p in parts):
        return "'.' and '..' path segments are not allowed"
    return ""


def within(url: str, prefix: str) -> bool:
    """True when `url` lies under `prefix`, segment by segment (s3://a never covers s3://ab)."""
    scheme, parts = _segments(url)
    pscheme, pparts = _segments(prefix)
    return scheme == pscheme and parts[: len(pparts)] == pparts


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class StoragePlan:
    """How the operator and the trials of one Study reach its storage."""

    storage: str  # the checkpoint root
    secret_name: str = ""  # Secret of the Study's namespace the operator reads; "": none
    trial_secret: str = ""  # Secret the trials get by secretKeyRef; "": none
    operator_credentials: bool = False  # the operator's own (ambient) credentials are used

    @property
    def describe(self) -> str:
        if self.secret_name:
            return f"Secret {self.secret_name}"
        return "the operator's credentials" if self.operator_credentials else "no credentials"


def plan_storage(
    storage: str,
    secret_name: str,
    namespace: str,
    access: StorageAccess,
    operator_secret: str = "",
) -> tuple[StoragePlan | None, list[SpecError]]:
    """Decide whose credentials reach `storage` for a Study of `namespace` that names
    `secret_name` (may be empty), or the errors that refuse it."""
    rules = access.for_namespace(namespace)
    errors: list[SpecError] = []
    path = "spec.checkpoint.storage"
    problem = _url_problem(storage)
    if problem:
        errors.append(SpecError(path, problem))
    elif rules.allowed_prefixes and not any(within(storage, p) for p in rules.allowed_prefixes):
        errors.append(
            SpecError(
                path,
                f"{storage} is outside the storage allowed in namespace {namespace} "
                f"({', '.join(rules.allowed_prefixes)}; {CHART_HINT}.{namespace}.allowedPrefixes)",
            )
        )
    scheme = _scheme(storage)
    if scheme in SECRET_SCHEMES:
        name = secret_name or ("" if rules.use_operator_credentials else rules.secret_name)
        if name:
            errors += _secret_errors(name, bool(secret_name), namespace, access, rules)
            plan = StoragePlan(storage, secret_name=name, trial_secret=name)
        elif rules.use_operator_credentials:
            plan = StoragePlan(storage, trial_secret=operator_secret, operator_credentials=True)
        else:
            errors.append(
                SpecError(
                    "spec.checkpoint.secretName",
                    f"required: namespace {namespace} has no default storage Secret and does "
                    f"not use the operator's credentials ({CHART_HINT}.{namespace}: secretName "
                    "or useOperatorCredentials)",
                )
            )
            plan = StoragePlan(storage)
    elif scheme in OPERATOR_ONLY_SCHEMES:
        if not rules.use_operator_credentials:
            errors.append(
                SpecError(
                    path,
                    f"{scheme}:// storage is reached with the operator's own credentials, which "
                    f"Studies of namespace {namespace} may not use "
                    f"({CHART_HINT}.{namespace}.useOperatorCredentials); use s3:// with a Secret",
                )
            )
        plan = StoragePlan(
            storage, trial_secret=secret_name or operator_secret, operator_credentials=True
        )
    else:  # file://: a shared volume, no credentials; the Secret, if named, is the trials'
        plan = StoragePlan(storage, trial_secret=secret_name or operator_secret)
    return (None if errors else plan), errors


def _secret_errors(
    name: str, named: bool, namespace: str, access: StorageAccess, rules: NamespaceStorage
) -> list[SpecError]:
    path = "spec.checkpoint.secretName"
    if not access.onboarded(namespace):
        return [
            SpecError(
                path,
                f"the operator may read no storage Secret in namespace {namespace}: the platform "
                f"has not onboarded it ({CHART_HINT})",
            )
        ]
    if access.listed_only and name not in rules.readable_secrets:
        offered = ", ".join(rules.readable_secrets) or "none"
        where = path if named else f"{CHART_HINT}.{namespace}.secretName"
        return [
            SpecError(
                where,
                f"Secret {name!r} is not a storage Secret the operator may read in namespace "
                f"{namespace}; allowed: {offered} ({CHART_HINT}.{namespace}.secretNames)",
            )
        ]
    return []


# ---------------------------------------------------------------------------------- credentials


def read_credentials(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    """The fsspec s3 options (`key`, `secret`, `token`) from Secret `namespace/name`.

    StorageUnavailable says which Secret and why (missing, forbidden, incomplete); the Secret's
    values never appear in a message.
    """
    where = f"Secret {namespace}/{name}"
    try:
        secret = api.get("Secret", namespace, name)
    except ApiError as exc:
        if exc.status == 403:
            raise StorageUnavailable(
                f"{where}: the operator may not read it (its RBAC grants only the storage "
                f"Secrets listed in {CHART_HINT})"
            ) from None
        raise StorageUnavailable(f"{where}: reading it failed (HTTP {exc.status})") from None
    if secret is None:
        raise StorageUnavailable(
            f"{where} not found: create it with keys {KEY_ID} and {KEY_SECRET}, or name "
            "another in spec.checkpoint.secretName"
        )
    data = secret.get("data") or {}
    values: dict[str, str] = {}
    for key in (KEY_ID, KEY_SECRET, KEY_TOKEN):
        raw = data.get(key)
        if raw is None:
            continue
        try:
            values[key] = base64.b64decode(str(raw), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise StorageUnavailable(f"{where}: key {key} is not base64 text") from None
    missing = [k for k in (KEY_ID, KEY_SECRET) if not values.get(k)]
    if missing:
        raise StorageUnavailable(f"{where} lacks key {' and '.join(missing)}")
    options: dict[str, Any] = {"key": values[KEY_ID], "secret": values[KEY_SECRET]}
    if values.get(KEY_TOKEN):
        options["token"] = values[KEY_TOKEN]
    return options


def storage_options(api: KubeApi, namespace: str, plan: StoragePlan) -> dict[str, Any]:
    """What the operator passes to fsspec for this plan: the Secret's keys, or nothing (the
    operator's ambient credentials, or a file:// root)."""
    if not plan.secret_name:
        return {}
    return read_credentials(api, namespace, plan.secret_name)


def _short(exc: BaseException) -> str:
    """The operator's own words for a storage error (never the server's text)."""
    if isinstance(exc, PermissionError):
        return "access denied"
    if isinstance(exc, FileNotFoundError):
        return "bucket or path not found"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return "connection failed"
    return type(exc).__name__


def probe(layout: CheckpointLayout, plan: StoragePlan) -> None:
    """Write, read back and delete one marker object under the run's prefix with the plan's
    credentials; StorageUnavailable if any step is refused."""
    store = layout.trial(PROBE_NAME)
    if store.local:
        return  # no credentials involved
    marker = f"{store.root}/{uuid.uuid4().hex}"
    token = f"{time.time()}".encode()
    try:
        store.fs.pipe_file(marker, token)
        if store.fs.cat_file(marker) != token:
            raise OSError("read back differs")
        store.fs.rm_file(marker)
    except Exception as exc:  # any failure means trials could not checkpoint either
        raise StorageUnavailable(
            f"{plan.describe} cannot write {layout.study_url}: {_short(exc)}",
            "spec.checkpoint.storage",
        ) from None


def study_event(meta: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    """A Warning event on the Study (for paths that have no StudyRunner, e.g. deletion)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    name = str(meta.get("name"))
    namespace = str(meta.get("namespace") or "default")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Study",
            "name": name,
            "namespace": namespace,
            "uid": str(meta.get("uid") or ""),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning",
        "source": {"component": "kubetune-operator"},
        "reportingComponent": "kubetune.io/operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
