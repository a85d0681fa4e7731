"""API tokens: bearer secrets for clients (CLI, dashboard, scripts) and workers.

A token is ``kst_`` followed by 43 URL-safe characters (32 random bytes from :mod:`secrets`).
Only its SHA-256 is stored (``api_tokens.token_hash``), so a database leak does not leak usable
tokens; a presented token is hashed and looked up. The tokens are random (256 bits), not
passwords, so an unsalted fast hash is the right tool (GitHub and Kubernetes do the same).

A token never appears in a log line or an error message: only its public ``id`` does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

TOKEN_PREFIX = "kst_"
#: Shortest token accepted at all (a bootstrap token chosen by an operator included).
MIN_TOKEN_LENGTH = 32


class Role(StrEnum):
    """What a token may do (see :mod:`controlplane.auth.policy` for the method lists).

    - ``admin``: every RPC in every namespace (and acting as a worker).
    - ``client``: flows, executions, logs, KV, files, triggers and the worker list, within the
      token's namespace scope.
    - ``worker``: the worker protocol (register, poll, heartbeats, results, logs of its task
      runs) and storage/KV calls carrying a task token of a task run leased to it.
    """

    ADMIN = "admin"
    CLIENT = "client"
    WORKER = "worker"


def generate() -> str:
    """A new random token (``kst_…``, 47 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_id() -> str:
    """A public token id (12 hex characters): what ``token ls``/``token revoke`` and logs show."""
    return secrets.token_hex(6)


def token_hash(token: str) -> str:
    """Hex SHA-256 of ``token`` (what the ``api_tokens`` table stores)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def covers(scope: str, namespace: str) -> bool:
    """Whether a token scoped to ``scope`` reaches ``namespace``: the same namespace or a child
    (``company.team`` covers ``company.team`` and ``company.team.a``, not ``company.teams`` nor
    ``company``). The empty scope covers every namespace."""
    return not scope or namespace == scope or namespace.startswith(scope + ".")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a verified, unexpired, unrevoked token.

    Attributes:
        token_id: The token's public id (safe to log).
        name: Its human name.
        role: Its :class:`Role`.
        namespace: Its namespace scope; "" = every namespace.
        expires_at: Aware UTC expiry, None = never.
    """

    token_id: str
    name: str
    role: Role
    namespace: str
    expires_at: datetime | None = None

    def covers(self, namespace: str) -> bool:
        """Whether this principal may act on ``namespace`` (see :func:`covers`)."""
        return covers(self.namespace, namespace)
