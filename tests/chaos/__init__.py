"""Chaos suite: crash and outage scenarios against real processes (issue 7, item 3).

Each scenario runs a ``kestrel server standalone`` subprocess on a fresh Postgres database and
the local Redis (own key prefix), ``python -m worker_sdk`` worker processes, injects one fault
(SIGKILL of the control plane, SIGKILL of a worker, dropped Postgres connections plus the Redis
keys deleted, a worker's network link cut (``tests/netns.py``), a crash at each named fault
point of ``controlplane/faults.py``), then checks in Postgres that nothing was lost or recorded twice, and prints its
figures. Assertions are about correctness only, never speed.

Run: ``pytest tests/chaos -m chaos -s`` (CI sizes) or ``python -m tests.chaos [--full]``.
"""
