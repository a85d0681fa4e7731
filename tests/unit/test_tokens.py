"""Task tokens: signed, tamper-evident, with clear errors."""

from __future__ import annotations

import pytest

from controlplane.errors import InvalidArgumentError
from controlplane.tokens import TaskTokenClaims, TaskTokenSigner


def test_round_trip_and_tampering():
    signer = TaskTokenSigner(b"0123456789abcdef0123")
    claims = TaskTokenClaims("exec", "tr", 2, 7, "w1")
    token = signer.sign(claims)
    assert signer.verify(token) == claims
    payload, mac = token.split(".")
    forged = TaskTokenSigner(b"another-secret-xxxxxxxx").sign(TaskTokenClaims("exec", "tr", 2, 8, "w1"))
    for bad in [f"{forged.split('.')[0]}.{mac}", token + "x", "nodot", ""]:
        with pytest.raises(InvalidArgumentError, match="task_token"):
            signer.verify(bad)


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        TaskTokenSigner(b"short")


def test_task_id_round_trips_and_a_token_without_it_still_verifies():
    signer = TaskTokenSigner(b"0123456789abcdef0123")
    with_task = TaskTokenClaims("exec", "tr", 1, 1, "w1", "my-task")
    assert signer.verify(signer.sign(with_task)).task_id == "my-task"
    # A token signed before the task id was added (no "k" in the payload) keeps working.
    older = signer.sign(TaskTokenClaims("exec", "tr", 1, 1, "w1"))
    assert signer.verify(older) == TaskTokenClaims("exec", "tr", 1, 1, "w1", "")
