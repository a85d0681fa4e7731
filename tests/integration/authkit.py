"""Helpers for authentication tests: every gRPC method of the API (from the service
descriptors, so a new RPC is covered without editing a test), raw calls with a chosen token, and
certificates made with ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from kestrel.v1 import (
    execution_pb2,
    flow_pb2,
    kv_pb2,
    log_pb2,
    storage_pb2,
    trigger_pb2,
    worker_pb2,
)

_MODULES = (execution_pb2, flow_pb2, kv_pb2, log_pb2, storage_pb2, trigger_pb2, worker_pb2)


@dataclass(frozen=True)
class Method:
    """One RPC: ``/kestrel.v1.Service/Name``, its request class and its streaming shape."""

    path: str
    descriptor: MethodDescriptor
    request_class: type
    response_class: type

    @property
    def client_streaming(self) -> bool:
        return self.descriptor.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.descriptor.server_streaming

    def __str__(self) -> str:
        return self.path.removeprefix("/kestrel.v1.")


def all_methods() -> list[Method]:
    """Every method of every service in ``kestrel.v1`` (sorted by path)."""
    out = []
    for module in _MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(Method(f"/{service.full_name}/{m.name}", m, message_factory.GetMessageClass(m.input_type),
                                  message_factory.GetMessageClass(m.output_type)))
    return sorted(out, key=lambda m: m.path)


def call(channel: grpc.Channel, method: Method, request, token: str | None = None, timeout: float = 10.0,
         raw_authorization: str | None = None):
    """Call ``method`` with ``request`` (a message, or for client streams a list of messages),
    sending ``token`` as a bearer token (or ``raw_authorization`` verbatim). Returns the
    response (a list for server streams); raises grpc.RpcError."""
    metadata = []
    if raw_authorization is not None:
        metadata.append(("authorization", raw_authorization))
    elif token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    kw = {"request_serializer": method.request_class.SerializeToString,
          "response_deserializer": method.response_class.FromString}
    if method.client_streaming:
        requests = request if isinstance(request, list) else [request]
        if method.server_streaming:
            return list(channel.stream_stream(method.path, **kw)(iter(requests), timeout=timeout, metadata=metadata))
        return channel.stream_unary(method.path, **kw)(iter(requests), timeout=timeout, metadata=metadata)
    if method.server_streaming:
        return list(channel.unary_stream(method.path, **kw)(request, timeout=timeout, metadata=metadata))
    return channel.unary_unary(method.path, **kw)(request, timeout=timeout, metadata=metadata)


def code_of(fn, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    """The status of a call (OK when it succeeded) and its details."""
    try:
        fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@dataclass(frozen=True)
class Pki:
    """A CA with a server certificate (localhost, 127.0.0.1) and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    rogue_cert: Path
    rogue_key: Path


def make_pki(directory: Path) -> Pki:
    """Generate a CA, server and client certificates (and a rogue client from another CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key, ca_cert, cn: str, server: bool):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = ca("kestrel test CA")
    other_key, other_cert = ca("rogue CA")
    s_key, s_cert = leaf(ca_key, ca_cert, "localhost", True)
    c_key, c_cert = leaf(ca_key, ca_cert, "worker-1", False)
    r_key, r_cert = leaf(other_key, other_cert, "rogue", False)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    pem = serialization.Encoding.PEM
    for stem, data in {"ca.pem": ca_cert.public_bytes(pem), "server.pem": s_cert.public_bytes(pem),
                       "server.key": key_pem(s_key), "client.pem": c_cert.public_bytes(pem),
                       "client.key": key_pem(c_key), "other-ca.pem": other_cert.public_bytes(pem),
                       "rogue.pem": r_cert.public_bytes(pem), "rogue.key": key_pem(r_key)}.items():
        (directory / stem).write_bytes(data)
        files[stem] = directory / stem
    return Pki(files["ca.pem"], files["server.pem"], files["server.key"], files["client.pem"], files["client.key"],
               files["other-ca.pem"], files["rogue.pem"], files["rogue.key"])


def iter_services() -> Iterator[str]:
    """Full names of the API's services."""
    for module in _MODULES:
        yield from (s.full_name for s in module.DESCRIPTOR.services_by_name.values())
