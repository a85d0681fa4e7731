"""Authentication and authorisation of the gRPC API: API tokens, their roles and namespace scopes.

- :mod:`controlplane.auth.tokens` — the token itself (generation, hashing) and :class:`Principal`,
  what a verified token grants;
- :mod:`controlplane.auth.store` — the ``api_tokens`` table (create, list, revoke, look up);
- :mod:`controlplane.auth.policy` — which role may call which gRPC method;
- :mod:`controlplane.auth.interceptor` — the gRPC server interceptor that authenticates every call;
- :mod:`controlplane.auth.tls` — server and channel credentials for TLS and mutual TLS.

The per-call namespace check used by the servicers is :mod:`controlplane.api.access`.
"""
