"""The executor: advances executions.

Pure decision logic (what to create next, when a flowable or the execution is done) lives in
:mod:`controlplane.engine.plan` and one module per flowable task under ``flowables/``; the
database side that applies decisions in one transaction is :mod:`controlplane.engine.executor`.
"""
