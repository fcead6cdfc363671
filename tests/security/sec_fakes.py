"""An in-memory stand-in for KubeApi: enough for one StudyRunner pass, and a record of calls."""

from __future__ import annotations

import copy
import uuid
from typing import Any


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, kind)

    def path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        return "/".join(p for p in (kind, namespace, name, sub) if p)

    def request(self, method: str, path: str, **_: Any) -> Any:
        self.calls.append((method, path.split("/")[0]))
        return None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind
            and ns == namespace
            and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in labels.items())
        ]

    def create(self, kind: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", kind))
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", uuid.uuid4().hex)
        self.objects[(kind, namespace, obj["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str = ""
    ) -> dict[str, Any]:
        self.calls.append(("patch", kind))
        obj = self.objects.setdefault((kind, namespace, name), {"metadata": {"name": name}})
        obj.update(copy.deepcopy(patch))
        return copy.deepcopy(obj)

    def replace_part(
        self, kind: str, namespace: str, name: str, part: str, value: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.calls.append(("patch", kind))
        obj = self.objects.setdefault((kind, namespace, name), {"metadata": {"name": name}})
        obj[part] = copy.deepcopy(value)
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str, **_: Any) -> bool:
        self.calls.append(("delete", kind))
        return self.objects.pop((kind, namespace, name), None) is not None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]
