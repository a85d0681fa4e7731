"""Server credentials for TLS and mutual TLS (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``)."""

from __future__ import annotations

from pathlib import Path

import grpc

from controlplane.errors import InvalidArgumentError


def _read(path: Path, option: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise InvalidArgumentError(f"{option}: {path} is not a PEM file")
    return data


def server_credentials(cert: Path | None, key: Path | None, client_ca: Path | None) -> grpc.ServerCredentials | None:
    """gRPC server credentials, or None for a plaintext server (no ``cert``).

    Args:
        cert: PEM certificate chain of the server.
        key: PEM private key of ``cert``.
        client_ca: PEM CA bundle; when given, every client must present a certificate signed by
            it (mutual TLS) or the handshake fails.

    Raises:
        InvalidArgumentError: only one of cert/key, a client CA without a certificate, or an
            unreadable or non-PEM file (the message names the option).
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidArgumentError("--tls-client-ca: mutual TLS needs --tls-cert and --tls-key too")
        return None
    if cert is None or key is None:
        raise InvalidArgumentError("--tls-cert and --tls-key: give both (the server's certificate and its key)")
    pair = (_read(key, "--tls-key"), _read(cert, "--tls-cert"))
    _check_key_matches(pair[0], pair[1])
    ca = _read(client_ca, "--tls-client-ca") if client_ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def _check_key_matches(key_pem: bytes, cert_pem: bytes) -> None:
    """The key must be the private key of the (first) certificate; gRPC would only fail to bind.

    Raises:
        InvalidArgumentError: unreadable key or certificate, or a key of another certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"--tls-key: not an unencrypted PEM private key ({exc})") from None
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise InvalidArgumentError(f"--tls-cert: not a PEM certificate ({exc})") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise InvalidArgumentError("--tls-key: this key does not belong to the certificate given with --tls-cert")
