"""The one TLS policy: real handshakes in memory between the serving context and clients
that offer less than it accepts, the certificate checked against its key at start and at
every reload (HTTPS and gRPC alike), and what gRPC cannot be held to refused up front."""

from __future__ import annotations

import contextlib
import os
import ssl
import time
from pathlib import Path

import pytest

from adapter.errors import UsageError
from adapter.security import tls
from adapter.security.tls import (
    CIPHER_SUITES,
    GRPC_SUITES_ENV,
    ServingTLS,
    TLSPolicy,
    TLSSettings,
    check_certificate,
)
from harness.pki import CA, Pair


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """Run a TLS handshake between two contexts in memory; the client's side when done."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, outgoing, incoming in (
            ("client", c, c_out, s_in),
            ("server", s, s_out, c_in),
        ):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
                done[name] = True
            incoming.write(outgoing.read())
        if all(done.values()):
            return c
    raise AssertionError("the handshake did not finish")


@pytest.fixture
def pki(tmp_path: Path) -> tuple[CA, Pair]:
    ca = CA("serving-ca", tmp_path / "pki")
    return ca, ca.issue("serving", "scaleahead", hosts=("localhost",), server=True, client=False)


def client(ca: CA, version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def test_the_default_policy_serves_ecdhe_aead_suites_over_tls_1_2_and_up(pki):
    ca, pair = pki
    served = ServingTLS(TLSSettings(pair.cert, pair.key), lambda: b"").context
    ok = handshake(served, client(ca, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert ok.version() == "TLSv1.2"
    assert handshake(served, client(ca, ssl.TLSVersion.TLSv1_3)).version() == "TLSv1.3"
    with pytest.raises(ssl.SSLError):  # a CBC suite: not in the policy, as gRPC's
        handshake(served, client(ca, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256"))


def test_a_tls_1_3_minimum_refuses_tls_1_2_clients(pki):
    ca, pair = pki
    policy = TLSPolicy(ssl.TLSVersion.TLSv1_3)
    served = ServingTLS(TLSSettings(pair.cert, pair.key, policy), lambda: b"").context
    with pytest.raises(ssl.SSLError):
        handshake(served, client(ca, ssl.TLSVersion.TLSv1_2))


def test_suites_named_are_the_only_ones_served(pki):
    ca, pair = pki
    policy = TLSPolicy(cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",))
    served = ServingTLS(TLSSettings(pair.cert, pair.key, policy), lambda: b"").context
    ok = handshake(served, client(ca, ssl.TLSVersion.TLSv1_2))
    assert ok.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    with pytest.raises(ssl.SSLError):
        handshake(served, client(ca, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"))


def test_grpc_gets_the_same_suites_and_a_minimum_it_cannot_keep_is_refused(monkeypatch):
    monkeypatch.delenv(GRPC_SUITES_ENV, raising=False)
    TLSPolicy().for_grpc()
    assert os.environ[GRPC_SUITES_ENV].split(":") == list(CIPHER_SUITES.values())
    with pytest.raises(UsageError, match=r"cannot be held to TLS 1\.3"):
        TLSPolicy(ssl.TLSVersion.TLSv1_3).for_grpc()


def test_a_key_that_is_not_the_certificates_is_refused_naming_the_file(pki, tmp_path):
    ca, pair = pki
    other = ca.issue("other", "someone", server=True)
    assert check_certificate(pair.cert, pair.key).subject.rfc4514_string() == "CN=scaleahead"
    with pytest.raises(UsageError, match=f"--tls-private-key-file {other.key}: not the key"):
        check_certificate(pair.cert, other.key)


def replace_files(pair: Pair, cert: bytes, key: bytes) -> None:
    """Rewrite a certificate pair in place, as a Secret's volume update does."""
    pair.key.write_bytes(key)
    pair.cert.write_bytes(cert)
    later = time.time() + 5  # a new mtime, whatever the clock's resolution
    for path in (pair.cert, pair.key):
        os.utime(path, (later, later))


def test_a_mismatched_pair_on_reload_keeps_the_previous_certificate(pki, monkeypatch):
    """HTTPS and gRPC alike: the next handshake keeps the last good pair."""
    ca, pair = pki
    monkeypatch.setattr(tls, "RELOAD_CHECK_INTERVAL", 0.0)
    served = ServingTLS(TLSSettings(pair.cert, pair.key), lambda: b"")
    grpc_files = tls._GrpcCertificates(TLSSettings(pair.cert, pair.key), None)
    before = served._current
    other = ca.issue("other", "someone", hosts=("localhost",), server=True)
    replace_files(pair, pair.cert.read_bytes(), other.key.read_bytes())  # key of another cert
    served._reload_if_changed()
    assert served._current is before
    assert grpc_files.changed() is None
    replace_files(pair, other.cert.read_bytes(), other.key.read_bytes())  # a good pair
    served._reload_if_changed()
    assert served._current is not before
    assert grpc_files.changed() is not None
