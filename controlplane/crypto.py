"""Encryption of SECRET inputs at rest (AES-256-GCM, from the ``cryptography`` package).

As Kestra's ``kestra.encryption.secret-key``: a SECRET input is stored encrypted in the
execution and decrypted only when a task's properties are rendered. Without a key the control
plane refuses SECRET inputs (Kestra does the same). The key is any text of at least
`MIN_KEY_LENGTH` characters (``KESTREL_ENCRYPTION_KEY``); the AES key is its SHA-256 digest.
``kestrel server local`` creates one in its data directory on first start.

Stored form: ``kestrel-aes256gcm:`` + URL-safe base64 of a 12-byte random nonce followed by the
ciphertext and its 16-byte tag.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "kestrel-aes256gcm:"
MIN_KEY_LENGTH = 32
"""Shortest accepted key (characters)."""


class EncryptionUnavailableError(RuntimeError):
    """No encryption key is configured (or it is too short)."""


class Encryptor:
    """AES-256-GCM with a key derived from ``key``.

    Raises:
        ValueError: ``key`` is shorter than `MIN_KEY_LENGTH` characters.
    """

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"the encryption key must be at least {MIN_KEY_LENGTH} characters long")
        self._aead = AESGCM(hashlib.sha256(key.encode("utf-8")).digest())

    def encrypt(self, text: str) -> str:
        """The stored form of ``text``."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), None)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, stored: str) -> str:
        """The text of a value made by :meth:`encrypt`.

        Raises:
            ValueError: not an encrypted value, or encrypted with another key (or altered).
        """
        if not is_encrypted(stored):
            raise ValueError("not an encrypted value")
        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX):].encode("ascii"))
            return self._aead.decrypt(raw[:12], raw[12:], None).decode("utf-8")
        except (InvalidTag, ValueError) as exc:
            raise ValueError("cannot decrypt the value: another encryption key, or altered data") from exc


def is_encrypted(value: object) -> bool:
    """Whether ``value`` is in the stored form of :meth:`Encryptor.encrypt`."""
    return isinstance(value, str) and value.startswith(PREFIX)


_encryptor: Encryptor | None = None


def configure(key: str | None) -> None:
    """Set (or clear, with None/empty) the process-wide key; the control plane calls this on start.

    Raises:
        ValueError: the key is too short.
    """
    global _encryptor
    _encryptor = Encryptor(key) if key else None


def encryptor() -> Encryptor:
    """The process-wide encryptor.

    Raises:
        EncryptionUnavailableError: no key configured.
    """
    if _encryptor is None:
        raise EncryptionUnavailableError(
            "SECRET inputs need an encryption key on the control plane (set KESTREL_ENCRYPTION_KEY, "
            f"at least {MIN_KEY_LENGTH} characters)"
        )
    return _encryptor
