"""Which role may call which gRPC method.

A method not named here is admin-only, so a new RPC is closed until someone opens it on purpose.
Namespace scope is checked by each servicer (:mod:`controlplane.api.access`), not here.
"""

from __future__ import annotations

from controlplane.auth.tokens import Role

_PKG = "/kestrel.v1."

#: Services every method of which a role may call.
_SERVICES: dict[Role, frozenset[str]] = {
    Role.CLIENT: frozenset({"FlowService", "ExecutionService", "TriggerService", "KVService", "StorageService"}),
    # Storage and KV: only with a task token of the worker's task run (checked by `access`).
    Role.WORKER: frozenset({"WorkerService", "StorageService", "KVService"}),
}

#: Single methods a role may call outside those services.
_METHODS: dict[Role, frozenset[str]] = {
    Role.CLIENT: frozenset({"LogService/ListLogs", "LogService/TailLogs", "WorkerService/ListWorkers"}),
    # ListLogs: only with a task token, and only its own execution's logs (log.Fetch; see
    # `access.log_reader`).
    Role.WORKER: frozenset({"LogService/AppendLogs", "LogService/ListLogs"}),
}

#: Methods that need no token at all (the standard gRPC health check, for load balancers).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)


def allowed(role: Role, method: str) -> bool:
    """Whether ``role`` may call ``method`` (a full gRPC method name, ``/kestrel.v1.X/Y``)."""
    if role is Role.ADMIN:
        return True
    if not method.startswith(_PKG):
        return False
    service_method = method[len(_PKG):]
    service = service_method.split("/", 1)[0]
    return service in _SERVICES.get(role, frozenset()) or service_method in _METHODS.get(role, frozenset())


def is_public(method: str) -> bool:
    """Whether ``method`` is served without a token."""
    return method.startswith(PUBLIC_PREFIXES)
