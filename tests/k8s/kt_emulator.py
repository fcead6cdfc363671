"""kmock's KubernetesEmulator with the API-server semantics the operator relies on.

Adds: metadata.uid/creationTimestamp/namespace/generation, a numeric resourceVersion bumped on
every write, 201 on create, 409 on conflicts (an existing name, or a patch whose
metadata.resourceVersion is not the object's), 422 on a failed JSON-patch `test`, JSON and merge
patches, status-subresource writes, generation bumped on spec changes, finalizers with
deletionTimestamp (Foreground deletion holds the object with the `foregroundDeletion`
finalizer), label selectors on lists and watches, field selectors on lists, list `kind`, and
watches that resume after the requested resourceVersion instead of replaying everything.
"""

from __future__ import annotations

import copy
import datetime
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import enums, rendering

# User-Agent prefix -> caller, for `ApiServer.calls`.
AGENTS = (("kopf", "kopf"), ("kubetune-operator", "operator"), ("kt-kubelet", "kubelet"))


def _now() -> str:
    return (
        datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def match_labels(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# Field-selector names that are not the field's path (as the API server maps them for Jobs).
FIELD_ALIASES = {"status.successful": "status.succeeded"}


def match_fields(selector: str, obj: dict[str, Any]) -> bool:
    """A field selector (`status.successful!=1,metadata.name=x`) on dotted paths; a missing
    field compares as ""."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        path = FIELD_ALIASES.get(path.strip(), path.strip())
        have: Any = obj
        for key in path.split("."):
            have = have.get(key) if isinstance(have, dict) else None
        equal = str("" if have is None else have) == value.strip().lstrip("=")
        if equal == negate:
            return False
    return True


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    rv: int = attrs.field(default=0, init=False)
    writes: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)
    conflicts: int = attrs.field(default=0, init=False)  # 409s answered to stale writes
    calls: Counter[tuple[str, str]] = attrs.field(factory=Counter, init=False)
    # (time, caller, what, name) of every write, when a benchmark sets it to a list
    timeline: list[tuple[float, str, str, str]] | None = attrs.field(default=None, init=False)

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    async def _publish(self, resource: Any, kind: str, raw: dict[str, Any]) -> None:
        await self._buses[resource].put({"type": kind, "object": copy.deepcopy(raw)})

    def _error(self, status: int, reason: str, message: str) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "code": status,
                "reason": reason,
                "message": message,
                "metadata": {},
            },
            status=status,
        )

    def count(self, request: rendering.Request) -> None:
        """Count the call by caller (User-Agent) and what it did: `calls["operator", "list
        jobs"]`, `calls["kopf", "watch pods"]`."""
        agent = str(request.headers.get("User-Agent") or "")
        who = next((name for prefix, name in AGENTS if agent.startswith(prefix)), "other")
        parts = request.url.path.strip("/").split("/")
        plural = request.resource.plural if request.resource is not None else parts[-1]
        verb = str(getattr(request.method, "value", request.method) or "").lower()
        if request.params.get("watch") in ("true", "1"):
            verb = "watch"
        elif verb == "get" and request.name is None:
            verb = "list"
        what = f"{verb} {plural}" + (f"/{request.subresource}" if request.subresource else "")
        self.calls[who, what] += 1
        if self.timeline is not None and verb in ("post", "patch", "put", "delete"):
            self.timeline.append((time.time(), who, what, request.name or ""))

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self.count(request)
        if request.resource is None or request.action not in (
            enums.action.CREATE,
            enums.action.UPDATE,
            enums.action.DELETE,
        ):
            return await super()._handle(request)
        if request.action == enums.action.DELETE and request.name is None:
            return self._error(405, "MethodNotAllowed", "collection delete not emulated")
        async with self._lock:
            status, body = await self._mutate(request)
        if status >= 400:
            return self._error(status, body["reason"], body["message"])
        return aiohttp.web.json_response(body, status=status)

    async def _mutate(self, request: rendering.Request) -> tuple[int, dict[str, Any]]:
        resource = request.resource
        self.writes.append((str(request.action), str(resource), request.name or ""))
        if request.action == enums.action.CREATE:
            obj = copy.deepcopy(request.data)
            meta = obj.setdefault("metadata", {})
            ns = request.namespace or meta.get("namespace")
            if ns:
                meta["namespace"] = ns
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (resource, ns, meta["name"])
            if key in self._objects and not self._objects[key].deleted:
                return 409, {"reason": "AlreadyExists", "message": f"{meta['name']} already exists"}
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            meta["resourceVersion"] = self._bump()
            if key in self._objects:
                self._objects[key].create(obj)
            else:
                self._objects[key] = obj
            await self._publish(resource, "ADDED", obj)
            return 201, obj
        key = (resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return 404, {"reason": "NotFound", "message": f"{request.name} not found"}
        current = copy.deepcopy(self._objects[key].last.raw)
        meta = current.setdefault("metadata", {})
        if request.action == enums.action.DELETE:
            options = request.data if isinstance(request.data, dict) else {}
            if options.get("propagationPolicy") == "Foreground" and not meta.get(
                "deletionTimestamp"
            ):
                meta.setdefault("finalizers", [])
                if "foregroundDeletion" not in meta["finalizers"]:
                    meta["finalizers"].append("foregroundDeletion")
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _now()
                    meta["resourceVersion"] = self._bump()
                    self._objects[key].patch(
                        {
                            "metadata": {
                                "deletionTimestamp": meta["deletionTimestamp"],
                                "finalizers": meta["finalizers"],
                                "resourceVersion": meta["resourceVersion"],
                            }
                        }
                    )
                    await self._publish(resource, "MODIFIED", current)
                return 200, current
            meta["resourceVersion"] = self._bump()
            self._objects[key].delete()
            await self._publish(resource, "DELETED", current)
            return 200, current
        # PATCH (merge or JSON patch); PUT is treated as a replace of spec/status/metadata
        data = request.data
        try:
            if isinstance(data, list):
                new = jsonpatch.apply_patch(current, data, in_place=False)
            else:
                new = _merge(current, data or {})
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
            return 422, {"reason": "Invalid", "message": str(exc)}
        new_meta = new.setdefault("metadata", {})
        wanted = new_meta.get("resourceVersion")
        if wanted and wanted != meta.get("resourceVersion"):
            # A patch that sets metadata.resourceVersion is a precondition (optimistic
            # concurrency), as on a real API server.
            self.conflicts += 1
            return 409, {
                "reason": "Conflict",
                "message": f"Operation cannot be fulfilled on {request.name}: the object has "
                "been modified; please apply your changes to the latest version and try again",
            }
        for k in ("uid", "creationTimestamp", "namespace", "name"):
            if k in meta:
                new_meta[k] = meta[k]
        if request.subresource == "status":
            new = {**current, "status": new.get("status")}
            new_meta = new["metadata"]
        elif current.get("spec") != new.get("spec"):
            new_meta["generation"] = int(meta.get("generation", 1)) + 1
        new_meta["resourceVersion"] = self._bump()
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._objects[key].patch(new)
            self._objects[key].delete()
            await self._publish(resource, "DELETED", new)
            return 200, new
        self._replace(key, new)
        await self._publish(resource, "MODIFIED", new)
        return 200, new

    def _replace(self, key: Any, new: dict[str, Any]) -> None:
        obj = self._objects[key]
        obj.delete()
        obj.create(new)

    # ------------------------------------------------------------------ reads

    def _matching(self, request: rendering.Request) -> list[dict[str, Any]]:
        selector = request.params.get("labelSelector", "")
        fields = request.params.get("fieldSelector", "")
        out = []
        for (resource, ns, _name), obj in self._objects.items():
            if resource != request.resource or obj.deleted:
                continue
            if request.namespace is not None and ns != request.namespace:
                continue
            raw = obj.last.raw
            if selector and not match_labels(selector, raw.get("metadata", {}).get("labels") or {}):
                continue
            if fields and not match_fields(fields, raw):
                continue
            out.append(copy.deepcopy(raw))
        return out

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        async with self._lock:
            items = self._matching(request)
            rv = str(self.rv)
        kind = (items[0].get("kind") if items else None) or "List"
        return {
            "apiVersion": "v1",
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""
        since = int(request.params.get("resourceVersion") or 0)
        selector = request.params.get("labelSelector", "")
        async with self._lock:
            items = [
                o
                for o in self._matching(request)
                if int(o["metadata"].get("resourceVersion", 0)) > since
            ]
        for item in items:
            yield {"type": "ADDED", "object": item}
        assert request.resource is not None
        async for event in self._buses[request.resource]:
            obj = event.get("object", {})
            meta = obj.get("metadata", {})
            if int(meta.get("resourceVersion", 0)) <= since:
                continue
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                continue
            if selector and not match_labels(selector, meta.get("labels") or {}):
                continue
            yield event

    # ------------------------------------------------------------------ test helpers

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), ns, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].last.raw)

    def items(self, resource: str, ns: str | None = None, **labels: str) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        out = []
        for (r, n, _), obj in self._objects.items():
            if r == res and not obj.deleted and (ns is None or n == ns):
                raw = obj.last.raw
                have = raw.get("metadata", {}).get("labels") or {}
                if all(have.get(k) == v for k, v in labels.items()):
                    out.append(copy.deepcopy(raw))
        return out


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


__all__ = ["ApiServer", "match_labels"]
