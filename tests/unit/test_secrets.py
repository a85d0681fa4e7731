"""SecretStore: Kestra OSS ``SECRET_<KEY>`` base64 variables and masking."""

from __future__ import annotations

import base64

import pytest

from controlplane.secrets import MASK, SecretNotFoundError, SecretStore


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_keys_are_looked_up_upper_cased_and_decoded():
    store = SecretStore({"SECRET_MY_SECRET": b64('{"secretKey":"secretValue"}'), "OTHER": "x"})
    assert store.get("my_secret") == '{"secretKey":"secretValue"}'
    assert len(store) == 1
    with pytest.raises(SecretNotFoundError, match="Cannot find secret for key 'other'."):
        store.get("other")


def test_invalid_base64_is_skipped_without_logging_the_value(caplog):
    store = SecretStore({"SECRET_BAD": "not base64 !!", "SECRET_GOOD": b64("goodvalue")})
    assert len(store) == 1
    assert "SECRET_BAD" in caplog.text and "not base64 !!" not in caplog.text


def test_mask_covers_raw_json_escaped_and_each_line():
    store = SecretStore({"SECRET_A": b64('say "hi"\nsecond line'), "SECRET_B": b64("abc"), "SECRET_C": b64("longer-token")})
    assert store.mask('x say "hi"\nsecond line y') == f"x {MASK} y"
    assert store.mask('{"v":"say \\"hi\\"\\nsecond line"}') == f'{{"v":"{MASK}"}}'
    assert store.mask("only second line here") == f"only {MASK} here"
    assert store.mask("abc is too short to mask") == "abc is too short to mask"
    assert store.mask("longer-token and longer-token") == f"{MASK} and {MASK}"


def test_no_secrets_means_text_unchanged():
    assert SecretStore({}).mask("anything") == "anything"


def test_wrapped_base64_decodes_as_with_javas_mime_decoder():
    wrapped = base64.encodebytes(b"passwordveryveryveyrlong" * 5).decode()
    assert "\n" in wrapped.strip()
    assert SecretStore({"SECRET_NEW_LINE": wrapped}).get("new_line") == "passwordveryveryveyrlong" * 5
