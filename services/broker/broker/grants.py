"""Grants: which role may produce or consume where (kept by the Broker, stored durably).

The HTTP side, who may call what, is broker.permissions.
"""

from __future__ import annotations

from broker.auth import Principal

#: Pulsar's AuthAction names; any other string is stored as null, as Pulsar's Jackson does.
ACTIONS = ("produce", "consume", "functions", "sources", "sinks", "packages")

Grants = dict[str, dict[str, tuple[str | None, ...]]]


class Permissions:
    """Grants by resource: `tenant/ns` for a namespace, the full topic name for a topic."""

    def __init__(self) -> None:
        self.grants: Grants = {}

    def set(self, resource: str, role: str, actions: tuple[str | None, ...] | None) -> None:
        """Grant `actions` (replacing what the role had there) or, with None, revoke."""
        if actions is None:
            self.grants.get(resource, {}).pop(role, None)
        else:
            self.grants.setdefault(resource, {})[role] = actions

    def of(self, resource: str) -> dict[str, list[str | None]]:
        return {role: _sorted(actions) for role, actions in self.grants.get(resource, {}).items()}

    def allows(self, principal: Principal, topic: str, action: str) -> bool:
        """May `principal` do `action` (produce or consume) on `topic` (a full name)?"""
        if principal.superuser:
            return True
        role = principal.role or ""
        namespace = "/".join(topic.split("://", 1)[-1].split("/")[:2])
        return any(action in self.grants.get(where, {}).get(role, ()) for where in (namespace, topic))

    def allows_in_namespace(self, principal: Principal, namespace: str) -> bool:
        """A namespace-level grant of produce or consume (Pulsar's GET_TOPICS rule)."""
        if principal.superuser:
            return True
        actions = self.grants.get(namespace, {}).get(principal.role or "", ())
        return "produce" in actions or "consume" in actions


def _sorted(actions: tuple[str | None, ...]) -> list[str | None]:
    return sorted(actions, key=lambda a: (a is not None, a or ""))
