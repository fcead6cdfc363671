"""What the executor needs to know about a trial workload kind: one small adapter per kind.

An adapter says, for its kind (`WorkloadShape`: where the pod templates are, in
`kubetune.operator.spec.workloads`), what the operator forces on a rendered object (`prepare`:
failure and restart policies, the rank environment), and how the object's status reads:
finished well or badly (`outcome`), and whether it is suspended (Kueue holds it). The executor
does the rest the same way for every kind: it creates, lists and deletes the object by its
plural, and judges pods by the `kubetune.io/workload` label the renderer puts on every pod
template.

A new kind is one module: a subclass with its shape, plural and the three readings, registered
in `workloads/__init__.py` (and its schema in the spec module's SHAPES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from kubetune.operator.spec.workloads import WorkloadShape


@dataclass(frozen=True)
class Outcome:
    """How a finished workload ended, as its status says."""

    succeeded: bool
    reason: str = ""
    message: str = ""


def true_condition(obj: dict[str, Any], *types: str) -> dict[str, Any] | None:
    """The first condition of one of `types` whose status is True."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") in types and c.get("status") == "True":
            return dict(c)
    return None


class WorkloadAdapter:
    """One trial workload kind (see the module docstring)."""

    shape: ClassVar[WorkloadShape]
    plural: ClassVar[str]
    # Condition types that mean success / failure in this kind's status.
    succeeded_conditions: ClassVar[tuple[str, ...]] = ()
    failed_conditions: ClassVar[tuple[str, ...]] = ()

    @property
    def kind(self) -> str:
        return self.shape.kind

    @property
    def api_version(self) -> str:
        return self.shape.api_version

    @property
    def api_prefix(self) -> str:
        return f"/apis/{self.api_version}"

    def prepare(self, obj: dict[str, Any], pod_labels: dict[str, str], env: list[Any]) -> None:
        """Force what the operator relies on into the rendered `obj` (in place). `pod_labels`
        and `env` are what every pod gets; the renderer already put them into every pod
        template it could reach (a kind without pod templates places them here)."""

    def outcome(self, obj: dict[str, Any]) -> Outcome | None:
        """Success or failure once the object's status says it finished, else None."""
        if true_condition(obj, *self.succeeded_conditions) is not None:
            return Outcome(True)
        failed = true_condition(obj, *self.failed_conditions)
        if failed is not None:
            return Outcome(False, str(failed.get("reason") or ""), str(failed.get("message") or ""))
        return None

    def suspended(self, obj: dict[str, Any]) -> bool:
        """Whether the object is held back (suspended; Kueue admits it later)."""
        return bool((obj.get("spec") or {}).get("suspend"))


__all__ = ["Outcome", "WorkloadAdapter", "true_condition"]
