"""Kestrel control plane: flow registration, executor, scheduler, state in Postgres, gRPC API."""

__version__ = "0.1.0"
