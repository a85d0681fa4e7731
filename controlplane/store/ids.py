"""Identifiers in Kestra's style: 22-character base62 strings from random UUIDs."""

from __future__ import annotations

import uuid

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A new random id, e.g. ``5ZrNsXcwlTKaO3yVqnHJjG`` (22 chars of base62, 122 random bits)."""
    n = uuid.uuid4().int
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))
