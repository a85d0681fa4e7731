"""A second "host" for tests: a network namespace joined to this one by a veth pair.

``veth_host()`` runs ``ip netns add``, ``ip link add … type veth peer … netns …``, gives both
ends an address on a private /30 and brings them (and the namespace's loopback) up; the
namespace is deleted on exit, even after a failure (deleting it also deletes the veth pair).
``prefix`` runs a command inside it; ``cut()`` / ``reconnect()`` take the host end of the link
down and up (a pulled cable: the far side keeps running but nothing reaches it).

Only where the kernel allows it (root, network namespaces, veth): :func:`refusal` says why not.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def refusal() -> str | None:
    """Why a namespace joined by veth cannot be made here (the exact failing command and the
    kernel's message), or None when it can (probed by making and deleting one)."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    name = f"kprobe-{uuid.uuid4().hex[:6]}"
    steps = [("netns", "add", name), ("link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b",
                                      "netns", name)]
    try:
        for step in steps:
            try:
                done = _ip(*step, check=False)
            except FileNotFoundError:
                return "the `ip` command (iproute2) is not installed"
            if done.returncode != 0:
                return f"the kernel refused `ip {' '.join(step)}`: {done.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)
        _ip("link", "del", f"{name}a", check=False)


@dataclass
class VethHost:
    """A network namespace reachable at ``far_ip`` from here; it reaches us at ``near_ip``."""

    name: str
    near_if: str
    near_ip: str
    far_ip: str

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Take this side's end of the veth down: every packet between the two is dropped."""
        _ip("link", "set", self.near_if, "down")

    def reconnect(self) -> None:
        """Bring this side's end up again."""
        _ip("link", "set", self.near_if, "up")


@contextmanager
def veth_host(label: str = "k") -> Iterator[VethHost]:
    """A namespace joined by a veth pair on 10.201.X.0/30 (X from the name); deleted on exit.

    Raises:
        subprocess.CalledProcessError: an ``ip`` command failed (call :func:`refusal` first).
    """
    tag = uuid.uuid4().hex[:6]
    name = f"{label}-{tag}"
    near_if, far_if = f"vk{tag}a", f"vk{tag}b"
    octet = zlib.crc32(tag.encode()) % 250 + 1
    host = VethHost(name, near_if, f"10.201.{octet}.1", f"10.201.{octet}.2")
    try:
        _ip("netns", "add", name)
        _ip("link", "add", near_if, "type", "veth", "peer", "name", far_if, "netns", name)
        _ip("addr", "add", f"{host.near_ip}/30", "dev", near_if)
        _ip("link", "set", near_if, "up")
        _ip("-n", name, "addr", "add", f"{host.far_ip}/30", "dev", far_if)
        _ip("-n", name, "link", "set", far_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield host
    finally:
        _ip("netns", "del", name, check=False)
        _ip("link", "del", near_if, check=False)
