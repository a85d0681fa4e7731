"""Kestra's ``jq`` filter: run a jq program on a value, returning the LIST of its results.

``{{ '{"key": "x"}' | jq('.key') }}`` is ``["x"]``; ``{{ value | jq('.key') | first }}`` is ``x``.
A string input is parsed as JSON text (as Kestra's ``readTree``), anything else is converted to
JSON. We use the ``jq`` package (bindings to the C jq library; Kestra uses jackson-jq, a Java
reimplementation of jq 1.6, so rare builtins may differ).

A jq program can loop forever or build huge values (``[range(1e9)]``, ``def f: f; f``, repeated
``[.[], .[]]``) and can read the environment (``$ENV``, ``env``). So only plain path programs
(``.a.b``, ``.[0]``, ``.["k"]``, ``.[]``, ``?``, ``|`` between them), whose output is bounded by
their input, run in this process. Any other program runs in a helper Python process, started on
first use and kept: empty environment, an address-space limit (``HELPER_MEMORY_BYTES``), the
render deadline as timeout (the helper is killed and restarted when it is exceeded), and a cap on
the size of its answer. The helper's start-up time is not counted against the render deadline.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from typing import Any

from controlplane.expressions import limits
from controlplane.expressions.errors import EvaluationError, LimitError
from controlplane.expressions.values import to_json

try:  # pragma: no branch
    import jq as _jq
except ImportError:  # pragma: no cover - the dependency is declared in pyproject.toml
    _jq = None

_STRING = r'"(?:[^"\\]|\\[^(])*"'
_STEP = rf"(?:\.[A-Za-z_][A-Za-z0-9_]*|\.?\[\s*(?:{_STRING}|-?\d+)?\s*\]|\.{_STRING})\??"
_PATH = rf"(?:\.|(?:{_STEP})+)"
_SIMPLE_PROGRAM = re.compile(rf"^\s*{_PATH}(?:\s*\|\s*{_PATH})*\s*$")

HELPER_MEMORY_BYTES = 1024 * 1024 * 1024
HELPER_START_SECONDS = 15.0

_HELPER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
import jq
programs = {{}}
sys.stdout.write("ready\n")
sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    try:
        program = programs.get(request["program"])
        if program is None:
            if len(programs) > 256:
                programs.clear()
            program = programs[request["program"]] = jq.compile(request["program"])
        text = json.dumps({{"ok": program.input_value(request["input"]).all()}})
        if len(text) > request["max"]:
            text = json.dumps({{"limit": len(text)}})
    except MemoryError:
        text = json.dumps({{"limit": -1}})
    except Exception as exc:
        text = json.dumps({{"error": str(exc)}})
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
"""


SIMPLE_PROGRAM_MAX_LENGTH = 256
"""Longer programs always go to the helper process: matching the plain-path pattern and
compiling are then bounded in this process whatever the program."""


def is_simple(program: str) -> bool:
    """A plain path program (bounded output) of at most `SIMPLE_PROGRAM_MAX_LENGTH` characters,
    safe to run in this process."""
    return len(program) <= SIMPLE_PROGRAM_MAX_LENGTH and bool(_SIMPLE_PROGRAM.match(program))


def _in_process(program: str, value: Any) -> list[Any]:
    if _jq is None:  # pragma: no cover
        raise EvaluationError("The 'jq' filter is unavailable: the 'jq' package is not installed")
    try:
        return list(_jq.compile(program).input_value(value).all())
    except ValueError as exc:
        raise EvaluationError(f"Failed to resolve JQ expression '{program}': {exc}") from exc


class _Helper:
    """The helper process that runs jq programs outside the safe subset, one at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.buffer = b""

    def _read_line(self, timeout: float) -> bytes | None:
        """One line from the helper, or ``None`` on timeout or end of output."""
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        end = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = end - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(stream.fileno(), 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
                if len(self.buffer) > 2 * limits.MAX_STRING_LENGTH:
                    return None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def _start(self) -> None:
        began = time.monotonic()
        self.buffer = b""
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _HELPER.format(memory=HELPER_MEMORY_BYTES)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
        )
        ready = self._read_line(HELPER_START_SECONDS)
        limits.extend_deadline(time.monotonic() - began)
        if ready != b"ready":
            self.stop()
            raise EvaluationError("The 'jq' filter could not start its helper process")

    def stop(self) -> None:
        """Kill the helper (a new one starts on the next call)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        self.process = None
        self.buffer = b""

    def run(self, program: str, value: Any) -> dict[str, Any]:
        request = json.dumps({"program": program, "input": value, "max": limits.MAX_STRING_LENGTH}).encode() + b"\n"
        limits.check_string_length(len(request), "jq input")
        if not self.lock.acquire(timeout=max(limits.remaining_seconds(), 0.01)):
            raise LimitError("the jq helper stayed busy past the rendering time limit")
        try:
            if self.process is None or self.process.poll() is not None:
                self._start()
            assert self.process is not None and self.process.stdin is not None
            try:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            except OSError:
                self.stop()
                raise LimitError(f"the jq program '{program}' was stopped (memory limit)") from None
            line = self._read_line(limits.remaining_seconds())
            if line is None:
                self.stop()
                limits.check_deadline()
                raise LimitError(f"the jq program '{program}' was stopped (memory or size limit)")
            return json.loads(line)
        finally:
            self.lock.release()


_HELPER_PROCESS = _Helper()


def _in_helper(program: str, value: Any) -> list[Any]:
    answer = _HELPER_PROCESS.run(program, value)
    if "ok" in answer:
        return list(answer["ok"])
    if "limit" in answer:
        raise LimitError(f"the jq program '{program}' produced more than the allowed memory or output size")
    raise EvaluationError(f"Failed to resolve JQ expression '{program}': {answer.get('error')}")


def run(value: Any, program: Any) -> list[Any] | None:
    """Kestra's ``jq`` filter.

    Args:
        value: JSON text or a JSON-like value; null gives null.
        program: The jq program.

    Returns:
        The list of the program's outputs.

    Raises:
        EvaluationError: invalid JSON input, invalid program, runtime error. LimitError: too slow
            or too big.
    """
    if value is None:
        return None
    if not isinstance(program, str):
        raise EvaluationError("The 'jq' filter expects an argument 'expression'.")
    if len(program) > limits.MAX_JQ_PROGRAM_LENGTH:
        raise LimitError(
            f"the jq program is {len(program)} characters long, more than the limit of {limits.MAX_JQ_PROGRAM_LENGTH}"
        )
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise EvaluationError(f"Unable to parse jq value '{value[:200]}' with type 'java.lang.String': {exc}") from exc
    else:
        data = json.loads(to_json(value))
    limits.check_deadline()
    if is_simple(program):
        return _in_process(program, data)
    return _in_helper(program, data)
