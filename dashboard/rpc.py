"""Optional RPCs: actions that appear in the dashboard once the control plane's API has them.

Some actions (restart, replay, resume, change labels, the trigger and worker listings) belong to
contracts other work adds while the dashboard already ships. The pages ask :func:`find_rpc` for
the first of a few conventional method names on the generated stub; when none exists the action
is hidden and the page says which RPC it waits for. When one exists, :func:`build_request` fills
its request message by field name from the values the page has (``id`` or ``execution_id``,
``task_run_id``, ``labels``, ``inputs_json`` ...), using the message descriptor, so no page
hard-codes a message that does not exist yet.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

__all__ = [
    "EXECUTION_ACTIONS",
    "TRIGGER_ACTIONS",
    "TRIGGER_LISTINGS",
    "WORKER_LISTINGS",
    "first_rpc",
    "OptionalRpc",
    "RpcSpec",
    "build_request",
    "find_rpc",
    "message_to_dict",
    "missing_fields",
    "rows_from_response",
]


@dataclass(frozen=True)
class RpcSpec:
    """An RPC a page can use when it exists.

    Attributes:
        title: What the button or section is called (``Restart``).
        module: Generated module holding the service, without ``_pb2`` (``execution``).
        service: Service name (``ExecutionService``).
        names: Method names to look for, in order of preference.
        needs: Request fields that must be filled for the call to make sense (any one of each
            tuple), e.g. ``(("id", "execution_id"), ("task_run_id",))``.
        waits_for: Who is expected to add it (shown while it is missing).
        states: Execution states in which the action applies (names); empty: any state.
    """

    title: str
    module: str
    service: str
    names: tuple[str, ...]
    needs: tuple[tuple[str, ...], ...] = ()
    waits_for: str = ""
    states: frozenset[str] = frozenset()

    def applies_to(self, state: str) -> bool:
        """Whether the action makes sense for an execution in ``state``."""
        return not self.states or str(state) in self.states


@dataclass(frozen=True)
class OptionalRpc:
    """An RPC found on the generated code: the spec, the method name and its descriptor."""

    spec: RpcSpec
    name: str
    method: pb_descriptor.MethodDescriptor

    @property
    def request_class(self) -> type[Message]:
        """The generated request message class."""
        from google.protobuf import message_factory

        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def request_fields(self) -> list[str]:
        """Field names of the request message."""
        return [f.name for f in self.method.input_type.fields]


_ID = ("id", "execution_id")

_TERMINAL = frozenset({"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "RETRIED", "SKIPPED"})

#: Execution actions beyond kill, looked up on ``ExecutionService`` (issue 4 adds them), with the
#: states Kestra offers them in: restart a FAILED/KILLED execution, replay a terminated one,
#: resume a PAUSED one, change labels any time.
EXECUTION_ACTIONS: tuple[RpcSpec, ...] = (
    RpcSpec(
        "Restart", "execution", "ExecutionService", ("RestartExecution",), (_ID,), "issue 4",
        frozenset({"FAILED", "KILLED"}),
    ),
    RpcSpec(
        "Replay", "execution", "ExecutionService", ("ReplayExecution",), (_ID, ("task_run_id",)), "issue 4",
        _TERMINAL,
    ),
    RpcSpec(
        "Resume", "execution", "ExecutionService", ("ResumeExecution",), (_ID,), "issue 4",
        frozenset({"PAUSED"}),
    ),
    RpcSpec(
        "Change labels",
        "execution",
        "ExecutionService",
        ("SetExecutionLabels", "UpdateExecutionLabels", "ReplaceExecutionLabels", "SetLabels"),
        (_ID, ("labels",)),
        "issue 4",
    ),
)  # fmt: skip


def _import(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"kestrel.v1.{module}_pb2")
    except ImportError:
        return None


def find_rpc(spec: RpcSpec, stub: Any | None = None) -> OptionalRpc | None:
    """The first of ``spec.names`` that the generated service declares (and, when ``stub`` is
    given, that the stub has as an attribute); ``None`` when none does.

    Args:
        spec: What to look for.
        stub: A generated stub instance (``ExecutionServiceStub(channel)``), checked with
            ``hasattr``; ``None`` checks the descriptor only.
    """
    module = _import(spec.module)
    if module is None:
        return None
    service = module.DESCRIPTOR.services_by_name.get(spec.service)
    if service is None:
        return None
    for name in spec.names:
        method = service.methods_by_name.get(name)
        if method is None or method.server_streaming or method.client_streaming:
            continue
        if stub is not None and not hasattr(stub, name):
            continue
        return OptionalRpc(spec, name, method)
    return None


def _is_repeated(fd: pb_descriptor.FieldDescriptor) -> bool:
    """Whether a field is repeated (``is_repeated`` in protobuf >= 6, ``label`` before)."""
    flag = getattr(fd, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return fd.label == pb_descriptor.FieldDescriptor.LABEL_REPEATED


def _set_field(msg: Message, fd: pb_descriptor.FieldDescriptor, value: Any) -> None:
    repeated = _is_repeated(fd)
    if fd.message_type is not None and fd.message_type.name == "Label" and isinstance(value, Mapping):
        target = getattr(msg, fd.name)
        for key, val in value.items():
            item = target.add()
            item.key, item.value = str(key), str(val)
        return
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry and isinstance(value, Mapping):
        getattr(msg, fd.name).update({str(k): str(v) for k, v in value.items()})
        return
    if fd.name.endswith("_json") and not isinstance(value, str):
        value = json.dumps(value)
    if repeated:
        getattr(msg, fd.name).extend(value if isinstance(value, list | tuple) else [value])
    elif fd.enum_type is not None and isinstance(value, str):
        enum_values = fd.enum_type.values_by_name
        for candidate in (value, f"{_enum_prefix(fd.enum_type.name)}_{value}".upper()):
            if candidate in enum_values:
                setattr(msg, fd.name, enum_values[candidate].number)
                return
        raise ValueError(f"{fd.full_name}: unknown value {value!r}")
    else:
        setattr(msg, fd.name, value)


def _enum_prefix(name: str) -> str:
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out += "_"
        out += ch.upper()
    return out


def build_request(rpc: OptionalRpc, values: Mapping[str, Any]) -> tuple[Message, list[str]]:
    """The RPC's request message with every field named in ``values`` set.

    Keys that are not fields of the message are skipped (several aliases can be offered, e.g.
    ``id`` and ``execution_id``); ``None`` values are skipped too. Labels may be given as a
    mapping; ``*_json`` fields accept any JSON-serialisable value.

    Returns:
        ``(request, used)``: the message and the field names that were set.

    Raises:
        ValueError: A value does not fit its field (wrong type, unknown enum name).
    """
    msg = rpc.request_class()
    fields = rpc.method.input_type.fields_by_name
    used = []
    for key, value in values.items():
        fd = fields.get(key)
        if fd is None or value is None:
            continue
        try:
            _set_field(msg, fd, value)
        except (TypeError, AttributeError) as err:
            raise ValueError(f"{fd.full_name}: {err}") from None
        used.append(key)
    return msg, used


def missing_fields(rpc: OptionalRpc, used: Iterable[str]) -> list[str]:
    """The ``needs`` groups of the spec none of whose fields was set (``"id|execution_id"``)."""
    have = set(used)
    return ["|".join(group) for group in rpc.spec.needs if not set(group) & have]


def message_to_dict(message: Message) -> dict[str, Any]:
    """A response message as a plain dict (proto field names, defaults included)."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def rows_from_response(response: dict[str, Any], preferred: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The first list of objects in a listing response (``{"workers": [...]}``), flattened one
    level for a table; ``preferred`` keys are tried first."""
    keys = [*preferred, *response]
    for key in keys:
        value = response.get(key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return [
                {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in item.items()}
                for item in value
            ]
    return []


#: Listing of live workers (issue 7 grows the worker API); tried in order.
WORKER_LISTINGS: tuple[RpcSpec, ...] = (
    RpcSpec("Workers", "worker", "WorkerService", ("ListWorkers",), (), "issue 7"),
    RpcSpec("Workers", "fleet", "FleetService", ("ListWorkers",), (), "issue 7"),
)

#: Trigger listing and actions (issue 5 adds a trigger API); each tried in order.
TRIGGER_LISTINGS: tuple[RpcSpec, ...] = (
    RpcSpec("Triggers", "trigger", "TriggerService", ("ListTriggers",), (), "issue 5"),
    RpcSpec("Triggers", "scheduler", "SchedulerService", ("ListTriggers",), (), "issue 5"),
)
TRIGGER_ACTIONS: tuple[RpcSpec, ...] = (
    RpcSpec(
        "Enable / disable",
        "trigger",
        "TriggerService",
        ("SetTriggerEnabled", "EnableTrigger", "UpdateTrigger", "ToggleTrigger"),
        (("namespace",), ("flow_id",), ("trigger_id", "id")),
        "issue 5",
    ),
    RpcSpec(
        "Backfill",
        "trigger",
        "TriggerService",
        ("StartBackfill", "Backfill", "CreateBackfill"),
        (("namespace",), ("flow_id",), ("trigger_id", "id")),
        "issue 5",
    ),
)


def first_rpc(specs: Iterable[RpcSpec], stub_for: Any = None) -> OptionalRpc | None:
    """The first spec of ``specs`` that :func:`find_rpc` finds.

    Args:
        specs: Specs in order of preference.
        stub_for: Optional callable ``spec -> stub instance`` (``None``: descriptor check only).
    """
    for spec in specs:
        found = find_rpc(spec, stub_for(spec) if stub_for is not None else None)
        if found is not None:
            return found
    return None
