"""Redis-backed coordination: wake-ups across replicas and leadership locks.

Redis is for efficiency only; correctness comes from Postgres constraints and fencing.
"""
