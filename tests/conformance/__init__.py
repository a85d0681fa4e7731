"""Kestra conformance harness: runs the corpus's ``run``-kind flows through a live Kestrel server.

- :mod:`tests.conformance.runner`: deploy, run and compare (also usable against any server).
- ``python -m tests.conformance [--server HOST:PORT] [--json FILE]``: prints the table and pass count.
- :mod:`tests.conformance.test_kestra_corpus`: one pytest per flow; known failures are listed in
  ``expected_failures.txt`` and marked strict xfail, so the list can only shrink.
"""
