"""Task tokens: signed names of one attempt's lease, handed to workers with each assignment.

A token is ``base64url(json payload) "." base64url(HMAC-SHA256)``. The payload names the
execution, task run, attempt, lease epoch, worker and (since issue 10) the task id. The signature stops a worker from forging
another's token; the fenced UPDATEs in the store (attempt + lease epoch + RUNNING) stop a
genuine but stale token from changing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from controlplane.errors import InvalidArgumentError


@dataclass(frozen=True)
class TaskTokenClaims:
    """What a task token names; ``task_id``: the task run's task id (so a log batch needs no
    lookup), "" in tokens signed without it."""

    execution_id: str
    task_run_id: str
    attempt: int
    lease_epoch: int
    worker_id: str
    task_id: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TaskTokenSigner:
    """Signs and verifies task tokens with one secret (shared by every replica via Postgres).

    Args:
        secret: Raw secret bytes (at least 16).
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("task token secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def sign(self, claims: TaskTokenClaims) -> str:
        """The token for ``claims``."""
        payload = _b64(
            json.dumps(
                {"x": claims.execution_id, "t": claims.task_run_id, "a": claims.attempt,
                 "e": claims.lease_epoch, "w": claims.worker_id, **({"k": claims.task_id} if claims.task_id else {})},
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str) -> TaskTokenClaims:
        """Check the signature and decode the claims.

        Raises:
            InvalidArgumentError: malformed token or bad signature (field ``task_token``).
        """
        try:
            payload, mac = token.split(".", 1)
        except ValueError:
            raise InvalidArgumentError("task_token: malformed task token") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidArgumentError("task_token: invalid task token signature")
        try:
            data = json.loads(_unb64(payload))
            return TaskTokenClaims(str(data["x"]), str(data["t"]), int(data["a"]), int(data["e"]), str(data["w"]),
                                   str(data.get("k", "")))
        except (ValueError, KeyError, TypeError):
            raise InvalidArgumentError("task_token: malformed task token payload") from None
