"""AES-256-GCM encryption of SECRET inputs."""

from __future__ import annotations

import pytest

from controlplane.crypto import PREFIX, Encryptor, is_encrypted


def test_round_trip_with_a_fresh_nonce_each_time():
    enc = Encryptor("k" * 32)
    first, second = enc.encrypt("pässword"), enc.encrypt("pässword")
    assert first.startswith(PREFIX) and is_encrypted(first) and first != second
    assert enc.decrypt(first) == enc.decrypt(second) == "pässword"


def test_another_key_or_altered_data_cannot_decrypt():
    stored = Encryptor("k" * 32).encrypt("secret")
    with pytest.raises(ValueError, match="another encryption key"):
        Encryptor("j" * 32).decrypt(stored)
    with pytest.raises(ValueError, match="another encryption key"):
        Encryptor("k" * 32).decrypt(stored[:-4] + "AAAA")
    with pytest.raises(ValueError, match="not an encrypted value"):
        Encryptor("k" * 32).decrypt("plain")


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="at least 32 characters"):
        Encryptor("short")
