"""Kestrel's benchmark harness (issue 10): ``python -m bench [--quick|--smoke] [--json FILE]``.

Every run creates its own Postgres database(s) on the machine's server, starts the control plane
as a separate process (``kestrel server standalone``) and workers as separate processes
(``python -m worker_sdk``), and measures in the same run the baselines that give the figures
meaning: a raw Postgres ``SKIP LOCKED`` claim loop and, when installed (``pip install -e
'.[bench]'``), Celery with the local Redis. See ``docs/benchmarks.md``.
"""
