"""Typed errors of the control plane; ``controlplane.api`` maps each to a gRPC status code.

Every error a user can cause names the flow, task and field it is about.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem in a flow source: dotted ``path`` (``tasks[1].type``), message, 1-based line."""

    path: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class KestrelError(Exception):
    """Base of every error the control plane raises on purpose."""


class InvalidArgumentError(KestrelError):
    """Bad input from the caller (INVALID_ARGUMENT)."""


class ResourceExhaustedError(KestrelError):
    """A request over a configured size limit (RESOURCE_EXHAUSTED); the message names the limit."""


class FlowValidationError(InvalidArgumentError):
    """A flow source failed validation; ``issues`` lists every problem found.

    Args:
        issues: The problems, each with path, message and YAML line.
        flow_ref: ``namespace.id`` when it could be read, for the message.
    """

    def __init__(self, issues: list[Issue], flow_ref: str = "") -> None:
        self.issues = list(issues)
        self.flow_ref = flow_ref
        head = f"flow {flow_ref} is invalid" if flow_ref else "flow is invalid"
        super().__init__(head + ":\n" + "\n".join(f"  - {i}" for i in self.issues))


class InputValidationError(InvalidArgumentError):
    """An execution input is missing or of the wrong type; names the flow and input."""


class NotFoundError(KestrelError):
    """An unknown flow, execution or task run, or a stale task token (NOT_FOUND)."""


class PermissionDeniedError(KestrelError):
    """The caller's API token or task token does not reach this resource (PERMISSION_DENIED)."""


class FailedPreconditionError(KestrelError):
    """The request is valid but the target's state refuses it (FAILED_PRECONDITION)."""


class ConflictError(KestrelError):
    """An optimistic-concurrency check failed, e.g. an expected flow revision (ABORTED)."""


class ExpressionError(KestrelError):
    """An expression failed to render; names the expression and where it was."""
