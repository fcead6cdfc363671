"""Trial-template policy: which pods a Study may make the operator create.

The operator creates trial Jobs with its own rights, so a Study's `trialTemplate` is untrusted
input. `check` holds a template to a `TemplatePolicy` and names every offending field:

- `level`: the Kubernetes Pod Security Standards level the pod must meet. `baseline` (default)
  forbids the known privilege escalations (privileged containers, host namespaces, hostPath
  volumes, host ports, added capabilities beyond the baseline list, unmasked /proc, custom SELinux
  types, unsafe sysctls, unconfined AppArmor or seccomp, Windows host processes); `restricted`
  adds the hardening rules (non-root, no privilege escalation, seccomp set, capabilities dropped,
  only ephemeral/projected volume types); `privileged` checks none of these.
- `allowed_service_accounts`: accounts the pod may run as; `serviceAccountName` absent or
  `default` is always allowed.
- `allow_node_name`: whether `spec.nodeName` (which bypasses the scheduler) may be set.
- `allowed_secrets`: None means the Secrets the Study declares (`spec.trialTemplateSecrets`,
  `spec.checkpoint.secretName`) and only those; a list (shell patterns) further limits what a
  Study may declare.

The checks apply to every container, init container and ephemeral container of every pod
template the trial template holds: a JobSet's replicated jobs, a PyTorchJob's replicas, a
TrainJob's trainer and runtime patches (`kubetune.operator.spec.workloads`), so a multi-node
workload cannot carry what a single pod could not. A pure module: the
validator (`kubetune validate`), the operator's render step and the tests share it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from kubetune.operator.spec.schema import SpecError
from kubetune.operator.spec.workloads import PodTemplateRef, shape_of, supported

LEVELS = ("privileged", "baseline", "restricted")
TEMPLATE_PATH = "spec.trialTemplate"

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True)
class TemplatePolicy:
    """What a trial pod may ask for (see the module docstring)."""

    level: str = "baseline"
    allowed_service_accounts: tuple[str, ...] = ()
    allow_node_name: bool = False
    allowed_secrets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"policy level must be one of {', '.join(LEVELS)}, got {self.level!r}")

    def describe(self) -> str:
        return f"{self.level} trial policy"

    def overridden(self, overrides: dict[str, Any]) -> TemplatePolicy:
        """This policy with the keys of a chart-style mapping (camelCase) replaced."""
        known = {
            "level": "level",
            "allowedServiceAccounts": "allowed_service_accounts",
            "allowNodeName": "allow_node_name",
            "allowedSecrets": "allowed_secrets",
        }
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown trial policy keys: {', '.join(unknown)}")
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            attr = known[key]
            if attr in ("allowed_service_accounts", "allowed_secrets") and value is not None:
                value = tuple(str(v) for v in value)
            elif attr == "allow_node_name":
                value = bool(value)
            changes[attr] = value
        return replace(self, **changes)


@dataclass(frozen=True)
class PolicyConfig:
    """The operator's policy: a default and per-namespace overrides (chart `trialPolicy`)."""

    default: TemplatePolicy = field(default_factory=TemplatePolicy)
    namespaces: dict[str, TemplatePolicy] = field(default_factory=dict)

    def for_namespace(self, namespace: str) -> TemplatePolicy:
        return self.namespaces.get(namespace, self.default)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PolicyConfig:
        """From the chart's `trialPolicy` mapping; namespace entries override the default."""
        data = dict(data or {})
        per_ns = data.pop("namespaces", None) or {}
        default = TemplatePolicy().overridden(data)
        return cls(
            default=default,
            namespaces={str(ns): default.overridden(dict(o or {})) for ns, o in per_ns.items()},
        )


def study_secrets(spec: dict[str, Any]) -> list[str]:
    """The Secrets a Study (its raw `spec`) declares for its trials."""
    names = [str(s) for s in spec.get("trialTemplateSecrets") or [] if s]
    secret = (spec.get("checkpoint") or {}).get("secretName")
    if secret:
        names.append(str(secret))
    return names


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Checker:
    def __init__(self, policy: TemplatePolicy) -> None:
        self.policy = policy
        self.errors: list[SpecError] = []
        # The pod template being checked (see `check`): its path, and for a lone container (a
        # TrainJob's trainer block) that container's own path.
        self.pod_path = TEMPLATE_PATH
        self.container_path = ""

    def at(self, ref: PodTemplateRef) -> _Checker:
        self.pod_path = f"{TEMPLATE_PATH}.{ref.path}" if ref.path else TEMPLATE_PATH
        self.container_path = f"{TEMPLATE_PATH}.{ref.container_path}" if ref.container_path else ""
        return self

    def _containers(self, pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in CONTAINER_LISTS:
            for i, c in enumerate(_list(pod.get(key))):
                if isinstance(c, dict):
                    yield self.container_path or f"{self.pod_path}.spec.{key}[{i}]", c

    def fail(self, path: str, reason: str) -> None:
        self.errors.append(SpecError(path, f"{self.policy.describe()}: {reason}"))

    # ------------------------------------------------------------------ both levels

    def baseline(self, meta: dict[str, Any], pod: dict[str, Any]) -> None:
        spec_path = f"{self.pod_path}.spec"
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                self.fail(f"{spec_path}.{key}", "host namespaces are not allowed")
        for i, vol in enumerate(_list(pod.get("volumes"))):
            if isinstance(vol, dict) and "hostPath" in vol:
                self.fail(f"{spec_path}.volumes[{i}].hostPath", "hostPath volumes are not allowed")
        psc = _dict(pod.get("securityContext"))
        self._security_context(f"{spec_path}.securityContext", psc)
        for i, sysctl in enumerate(_list(psc.get("sysctls"))):
            name = _dict(sysctl).get("name")
            if name not in SAFE_SYSCTLS:
                self.fail(
                    f"{spec_path}.securityContext.sysctls[{i}].name",
                    f"sysctl {name!r} is not in the safe set",
                )
        for key, value in _dict(meta.get("annotations")).items():
            if str(key).startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or str(value).startswith("localhost/")
            ):
                self.fail(
                    f"{self.pod_path}.metadata.annotations[{key}]",
                    f"AppArmor profile {value!r} is not allowed (runtime/default or localhost/*)",
                )
        for path, c in self._containers(pod):
            sc = _dict(c.get("securityContext"))
            sc_path = f"{path}.securityContext"
            if sc.get("privileged"):
                self.fail(f"{sc_path}.privileged", "privileged containers are not allowed")
            added = _list(_dict(sc.get("capabilities")).get("add"))
            for j, cap in enumerate(added):
                if cap not in BASELINE_CAPABILITIES:
                    self.fail(
                        f"{sc_path}.capabilities.add[{j}]",
                        f"capability {cap!r} is beyond the baseline set",
                    )
            if sc.get("procMount") not in (None, "Default"):
                self.fail(f"{sc_path}.procMount", "only the Default /proc mount is allowed")
            self._security_context(sc_path, sc)
            for j, port in enumerate(_list(c.get("ports"))):
                if _dict(port).get("hostPort"):
                    self.fail(f"{path}.ports[{j}].hostPort", "host ports are not allowed")

    def _security_context(self, path: str, sc: dict[str, Any]) -> None:
        """The rules that apply to pod- and container-level securityContext alike."""
        selinux = _dict(sc.get("seLinuxOptions"))
        if (selinux.get("type") or "") not in SELINUX_TYPES:
            self.fail(
                f"{path}.seLinuxOptions.type", f"SELinux type {selinux['type']!r} is not allowed"
            )
        for key in ("user", "role"):
            if selinux.get(key):
                self.fail(
                    f"{path}.seLinuxOptions.{key}", f"setting the SELinux {key} is not allowed"
                )
        if _dict(sc.get("seccompProfile")).get("type") == "Unconfined":
            self.fail(f"{path}.seccompProfile.type", "an Unconfined seccomp profile is not allowed")
        if _dict(sc.get("appArmorProfile")).get("type") == "Unconfined":
            self.fail(
                f"{path}.appArmorProfile.type", "an Unconfined AppArmor profile is not allowed"
            )
        if _dict(sc.get("windowsOptions")).get("hostProcess"):
            self.fail(
                f"{path}.windowsOptions.hostProcess", "Windows host processes are not allowed"
            )

    # ------------------------------------------------------------------ restricted only

    def restricted(self, pod: dict[str, Any]) -> None:
        spec_path = f"{self.pod_path}.spec"
        for i, vol in enumerate(_list(pod.get("volumes"))):
            kinds = sorted(k for k in _dict(vol) if k != "name")
            for kind in kinds:
                if kind not in RESTRICTED_VOLUMES and kind != "hostPath":  # hostPath: baseline
                    self.fail(f"{spec_path}.volumes[{i}].{kind}", f"{kind} volumes are not allowed")
        psc = _dict(pod.get("securityContext"))
        pod_non_root = psc.get("runAsNonRoot") is True
        pod_seccomp = _dict(psc.get("seccompProfile")).get("type") in (
            "RuntimeDefault",
            "Localhost",
        )
        if psc.get("runAsUser") == 0:
            self.fail(f"{spec_path}.securityContext.runAsUser", "running as root is not allowed")
        for path, c in self._containers(pod):
            sc = _dict(c.get("securityContext"))
            sc_path = f"{path}.securityContext"
            if sc.get("allowPrivilegeEscalation") is not False:
                self.fail(f"{sc_path}.allowPrivilegeEscalation", "must be false")
            if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot")):
                self.fail(f"{sc_path}.runAsNonRoot", "must be true (here or in the pod)")
            if sc.get("runAsUser") == 0:
                self.fail(f"{sc_path}.runAsUser", "running as root is not allowed")
            seccomp = _dict(sc.get("seccompProfile")).get("type")
            if not (
                seccomp in ("RuntimeDefault", "Localhost") or (seccomp is None and pod_seccomp)
            ):
                self.fail(
                    f"{sc_path}.seccompProfile.type",
                    "must be RuntimeDefault or Localhost (here or in the pod)",
                )
            caps = _dict(sc.get("capabilities"))
            if "ALL" not in _list(caps.get("drop")):
                self.fail(f"{sc_path}.capabilities.drop", "must drop ALL")
            for j, cap in enumerate(_list(caps.get("add"))):
                if cap != "NET_BIND_SERVICE" and cap in BASELINE_CAPABILITIES:
                    self.fail(
                        f"{sc_path}.capabilities.add[{j}]", "only NET_BIND_SERVICE may be added"
                    )

    # ------------------------------------------------------------------ every level

    def identity(self, pod: dict[str, Any], declared: list[str]) -> None:
        spec_path = f"{self.pod_path}.spec"
        for key in ("serviceAccountName", "serviceAccount"):
            account = pod.get(key)
            if account not in (None, "", "default") and (
                account not in self.policy.allowed_service_accounts
            ):
                allowed = ", ".join(self.policy.allowed_service_accounts) or "none"
                self.fail(
                    f"{spec_path}.{key}",
                    f"service account {account!r} is not allowed (allowed besides default: "
                    f"{allowed})",
                )
        if pod.get("nodeName") and not self.policy.allow_node_name:
            self.fail(
                f"{spec_path}.nodeName",
                "nodeName bypasses the scheduler and is not allowed; use nodeSelector or affinity",
            )
        for path, name in self._secret_refs(pod):
            if name not in declared:
                self.fail(
                    path,
                    f"Secret {name!r} is not declared in spec.trialTemplateSecrets",
                )

    def declared(self, declared: list[str]) -> None:
        """The Secrets the Study declares against the operator's allowed patterns (once)."""
        patterns = self.policy.allowed_secrets
        for i, name in enumerate(declared):
            if patterns is not None and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                self.fail(
                    f"spec.trialTemplateSecrets[{i}]",
                    f"Secret {name!r} is not in the operator's allowed secrets",
                )

    def _secret_refs(self, pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
        spec_path = f"{self.pod_path}.spec"
        for path, c in self._containers(pod):
            for j, env in enumerate(_list(c.get("env"))):
                ref = _dict(_dict(_dict(env).get("valueFrom")).get("secretKeyRef"))
                if ref:
                    yield f"{path}.env[{j}].valueFrom.secretKeyRef.name", str(ref.get("name", ""))
            for j, src in enumerate(_list(c.get("envFrom"))):
                ref = _dict(_dict(src).get("secretRef"))
                if ref:
                    yield f"{path}.envFrom[{j}].secretRef.name", str(ref.get("name", ""))
        for i, vol in enumerate(_list(pod.get("volumes"))):
            vol = _dict(vol)
            if "secret" in vol:
                name = str(_dict(vol["secret"]).get("secretName", ""))
                yield f"{spec_path}.volumes[{i}].secret.secretName", name
            for j, source in enumerate(_list(_dict(vol.get("projected")).get("sources"))):
                ref = _dict(_dict(source).get("secret"))
                if ref:
                    yield (
                        f"{spec_path}.volumes[{i}].projected.sources[{j}].secret.name",
                        str(ref.get("name", "")),
                    )


def check(
    template: dict[str, Any], policy: TemplatePolicy, study_secrets: list[str]
) -> list[SpecError]:
    """Every way `template` (a Study's trialTemplate) breaks `policy`, each `path: reason`.

    `study_secrets` are the Secrets the Study declares (see `study_secrets()`)."""
    template = _dict(template)
    checker = _Checker(policy)
    shape = shape_of(template)
    if shape is None:
        checker.fail(
            f"{TEMPLATE_PATH}.kind",
            f"unknown trial workload {template.get('apiVersion')}/{template.get('kind')}; "
            f"supported: a pod template (no kind), {supported()}",
        )
        return checker.errors
    for ref in shape.pod_templates(template):
        checker.at(ref)
        meta = _dict(ref.template.get("metadata"))
        pod = _dict(ref.template.get("spec"))
        if policy.level in ("baseline", "restricted"):
            checker.baseline(meta, pod)
        # A TrainJob's trainer block cannot carry a security context: its pods' hardening is the
        # (cluster admin's) training runtime's, so only the baseline and identity rules apply.
        if policy.level == "restricted" and not ref.container_path:
            checker.restricted(pod)
        checker.identity(pod, list(study_secrets))
    checker.declared(list(study_secrets))
    return checker.errors


__all__ = [
    "LEVELS",
    "PolicyConfig",
    "TemplatePolicy",
    "check",
    "study_secrets",
]
