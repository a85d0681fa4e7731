"""Secrets as in Kestra's open-source edition, and their masking.

Kestra OSS reads a secret ``KEY`` from the environment variable ``SECRET_<KEY upper-cased>``,
whose value is base64-encoded (line breaks allowed); ``{{ secret('my_key') }}`` returns the decoded text. The control
plane renders expressions, so the variables are read from *its* environment (workers need none).

Masking: every secret value is replaced with ``******`` in text the control plane stores or
returns to clients (log lines and error messages when stored, outputs/inputs/trigger JSON in API
responses), in its raw form, its JSON-escaped form and — for multi-line secrets — line by line.
Values shorter than `MIN_MASKED_LENGTH` characters are not masked (they would mask ordinary
words). Task properties sent to a worker, and outputs stored for later tasks, keep the value:
a task that needs a secret gets it.

Sources: Kestra's ``EnvVarSecretService`` (``SECRET_`` prefix, base64, upper-cased key) and its
log masking of secret values (``******``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping

ENV_PREFIX = "SECRET_"
MASK = "******"
MIN_MASKED_LENGTH = 4
"""Shortest secret value (characters) that is masked."""

_log = logging.getLogger(__name__)


class SecretNotFoundError(LookupError):
    """No ``SECRET_<KEY>`` variable holds a valid base64 value for the key."""


class SecretStore:
    """The secrets of one environment, decoded once.

    Args:
        environ: The environment to read ``SECRET_*`` variables from (default ``os.environ``).
            Variables whose value is not valid base64 or not UTF-8 are skipped with a warning
            that names the variable (never its value).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._values: dict[str, str] = {}
        for name, raw in env.items():
            if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
                continue
            try:
                # Whitespace is ignored, as Java's MIME decoder does (`base64` wraps at 76).
                self._values[name[len(ENV_PREFIX):]] = base64.b64decode("".join(raw.split()), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                _log.warning("environment variable %s is not valid base64 UTF-8 text: secret ignored", name)
        self._pattern = _mask_pattern(self._values.values())

    @classmethod
    def of_values(cls, values: Iterable[str]) -> SecretStore:
        """A store that only masks ``values`` (e.g. an execution's SECRET inputs)."""
        store = cls({})
        store._pattern = _mask_pattern(values)
        return store

    def get(self, key: str) -> str:
        """The decoded value of secret ``key`` (looked up upper-cased, as Kestra does).

        Raises:
            SecretNotFoundError: no such secret.
        """
        value = self._values.get(key.upper())
        if value is None:
            raise SecretNotFoundError(f"Cannot find secret for key '{key}'.")
        return value

    def mask(self, text: str) -> str:
        """``text`` with every secret value (raw, JSON-escaped, each line of a multi-line one)
        replaced by ``******``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._values)


def _mask_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for value in values:
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]
        candidates = {value, escaped, json.dumps(value)[1:-1],
                      json.dumps(escaped, ensure_ascii=False)[1:-1]}  # JSON text inside a JSON string
        if "\n" in value:
            candidates.update(line.strip() for line in value.splitlines())
        forms.update(c for c in candidates if len(c) >= MIN_MASKED_LENGTH)
    if not forms:
        return None
    # Longest first, so a value containing another is masked whole.
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


_store: SecretStore | None = None


def configure(environ: Mapping[str, str] | None = None) -> SecretStore:
    """(Re)load the process-wide secrets from ``environ`` (default ``os.environ``); the control
    plane calls this when it starts. Returns the store."""
    global _store
    _store = SecretStore(environ)
    return _store


def store() -> SecretStore:
    """The process-wide secrets (loaded from ``os.environ`` on first use)."""
    return _store if _store is not None else configure()


def mask(text: str) -> str:
    """:meth:`SecretStore.mask` with the process-wide secrets."""
    return store().mask(text)


def execution_masker(inputs: object) -> SecretStore:
    """A store masking the process-wide secrets and an execution's SECRET inputs: every value of
    ``inputs`` (nested maps and lists) in the encrypted stored form is decrypted and masked too.
    Needs no flow: encrypted values are recognised by their prefix (:mod:`controlplane.crypto`)."""
    from controlplane import crypto

    found: list[str] = []
    stack = [inputs]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif crypto.is_encrypted(value):
            try:
                found.append(crypto.encryptor().decrypt(value))  # type: ignore[arg-type]
            except (ValueError, crypto.EncryptionUnavailableError):
                continue
    if not found:
        return store()
    combined = SecretStore.of_values([*store()._values.values(), *found])
    return combined


class MaskingFilter(logging.Filter):
    """A logging filter that masks the process-wide secret values in every record's message (so
    a warning quoting a rendered value never writes a secret to the control plane's log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if len(store()):
            message = record.getMessage()
            masked = mask(message)
            if masked != message:
                record.msg, record.args = masked, ()
        return True


def install_log_masking() -> None:
    """Attach a :class:`MaskingFilter` to every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
