"""Authentication and request attributes without a cluster: real certificates, real
signature checks; the Kubernetes API calls themselves are tested in test_secure."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapter.errors import BadRequest, UsageError
from adapter.forward import identity_headers
from adapter.names import check_segment
from adapter.security.authn import (
    NEW_TOKEN_BURST,
    NEW_TOKEN_BURST_PER_ADDRESS,
    Authenticator,
    TooManyTokenReviews,
)
from adapter.security.authz import Authorizer
from adapter.security.identity import Attributes, User
from adapter.security.options import AuthenticationSettings, AuthorizationSettings
from adapter.security.ratelimit import TokenBucket
from adapter.security.request_info import request_attributes
from harness.pki import CA

BASE = "/apis/external.metrics.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        # What the HPA controller asks: a list of the metric in its namespace.
        (
            "GET",
            f"{BASE}/namespaces/shop/qps",
            Attributes(
                "list",
                f"{BASE}/namespaces/shop/qps",
                "qps",
                "shop",
                *("external.metrics.k8s.io", "v1beta1"),
            ),
        ),
        (
            "GET",
            f"{BASE}/namespaces/shop/qps/one",
            Attributes(
                "get",
                f"{BASE}/namespaces/shop/qps/one",
                "qps",
                "shop",
                "external.metrics.k8s.io",
                "v1beta1",
                "one",
            ),
        ),
        (
            "GET",
            f"{BASE}/qps",
            Attributes("list", f"{BASE}/qps", "qps", "", "external.metrics.k8s.io", "v1beta1"),
        ),
        # The namespace object itself.
        (
            "GET",
            f"{BASE}/namespaces/shop",
            Attributes(
                "get",
                f"{BASE}/namespaces/shop",
                "namespaces",
                "",
                "external.metrics.k8s.io",
                "v1beta1",
                "shop",
            ),
        ),
        # Discovery and everything else: non-resource URLs with the method as verb.
        ("GET", BASE, Attributes("get", BASE)),
        ("GET", "/apis", Attributes("get", "/apis")),
        ("GET", "/metrics", Attributes("get", "/metrics")),
        (
            "POST",
            f"{BASE}/namespaces/shop/qps",
            Attributes(
                "post",
                f"{BASE}/namespaces/shop/qps",
                "qps",
                "shop",
                "external.metrics.k8s.io",
                "v1beta1",
            ),
        ),
    ],
)
def test_request_attributes_follow_the_api_servers_request_info(method, path, expected):
    assert request_attributes(method, path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        # Authorized as resource "..", it would have been forwarded as the namespace list.
        (f"{BASE}/namespaces/shop/..", 'invalid resource "..": may not be empty'),
        (f"{BASE}/namespaces/shop/.", 'invalid resource ".": may not be empty'),
        (f"{BASE}/namespaces/shop/qps%2Fx", 'invalid resource "qps%2Fx": may not contain "%"'),
        (f"{BASE}/namespaces/shop/qps\x00", r'invalid resource "qps\u0000": may not contain'),
        (f"{BASE}/namespaces/shop/q\r\nps", r'invalid resource "q\r\nps": may not contain "\r"'),
        (f"{BASE}/namespaces/Shop/qps", 'invalid namespace "Shop": expected a DNS-1123 label'),
        (f"{BASE}/namespaces/shop/qps/..", 'invalid name "..": may not be empty'),
        ("/apis/%2e%2e/v1beta1/namespaces/shop/qps", 'invalid group "%2e%2e"'),
    ],
)
def test_a_resource_path_segment_that_would_not_mean_itself_is_a_bad_request(path, message):
    with pytest.raises(BadRequest) as caught:
        request_attributes("GET", path)
    assert caught.value.code == 400 and message in caught.value.message


@pytest.mark.parametrize(
    "name", ["orders", "café", "orders:eu", "a b", "x+y", "a..b", "...", "-", "ab~c"]
)
def test_a_segment_that_means_itself_passes(name):
    check_segment("metric name", name)
    assert request_attributes("GET", f"{BASE}/namespaces/shop/{name}").resource == name


def test_always_allowed_paths_match_exactly_or_by_prefix():
    authorizer = Authorizer(AuthorizationSettings(), kube=None)  # type: ignore[arg-type]
    assert authorizer.always_allowed("/healthz")
    assert authorizer.always_allowed("/openapi/v3/apis/external.metrics.k8s.io/v1beta1")
    assert not authorizer.always_allowed("/healthz/extra")
    assert not authorizer.always_allowed("/metrics")
    assert not authorizer.always_allowed(BASE)


@pytest.fixture
def pki(tmp_path):
    return {
        "cluster": CA("cluster-ca", tmp_path / "cluster"),
        "front": CA("front-proxy-ca", tmp_path / "front"),
        "other": CA("other-ca", tmp_path / "other"),
    }


def der(pair) -> bytes:
    return x509.load_pem_x509_certificate(pair.cert.read_bytes()).public_bytes(Encoding.DER)


def test_certificates_prove_users_only_when_a_trusted_ca_signed_them(pki):
    settings = AuthenticationSettings(
        client_ca_file=pki["cluster"].cert,
        requestheader_client_ca_file=pki["front"].cert,
        requestheader_allowed_names=("front-proxy-client",),
    )
    authn = Authenticator(settings, kube=None)
    headers = [
        (b"x-remote-user", b"alice"),
        (b"x-remote-group", b"dev"),
        (b"x-remote-group", b"ops"),
        (b"x-remote-extra-scopes%2Fa", b"x"),
    ]
    proxy = der(pki["front"].issue("proxy", "front-proxy-client"))
    assert authn.from_certificate(proxy, headers) == User(
        "alice", ("dev", "ops", "system:authenticated"), "", (("scopes/a", ("x",)),)
    )
    assert authn.from_certificate(proxy, []) is None  # no user header: proves nobody
    # A front-proxy-CA certificate with a name that is not allowed.
    stranger = der(pki["front"].issue("stranger", "someone-else"))
    assert authn.from_certificate(stranger, headers) is None
    # A cluster-CA certificate is its CN and O; the headers are not read.
    bob = der(pki["cluster"].issue("bob", "bob", orgs=("team-a", "team-b")))
    assert authn.from_certificate(bob, headers) == User(
        "bob", ("team-a", "team-b", "system:authenticated")
    )
    # The same names signed by a CA nobody trusts prove nothing.
    forged = der(pki["other"].issue("forged", "front-proxy-client"))
    assert authn.from_certificate(forged, headers) is None
    assert authn.from_certificate(None, headers) is None
    # The TLS layer is told to trust exactly the two CAs.
    assert authn.client_cas_pem().count(b"BEGIN CERTIFICATE") == 2


def test_identities_outside_ascii_are_read_and_passed_on_as_utf8(pki):
    """The API server writes X-Remote-* values as UTF-8: read as Latin-1, "josé" became
    "josÃ©" (403 despite a RoleBinding for josé), and forwarding "équipe" was a 500."""
    settings = AuthenticationSettings(
        requestheader_client_ca_file=pki["front"].cert,
        requestheader_allowed_names=("front-proxy-client",),
    )
    authn = Authenticator(settings, kube=None)
    proxy = der(pki["front"].issue("proxy", "front-proxy-client"))
    user = User("josé", ("équipe", "東京", "system:authenticated"), "", (("scopes/ü", ("ñ",)),))
    passed_on = identity_headers(user)
    assert (b"X-Remote-User", "josé".encode()) in passed_on
    assert all(isinstance(v, bytes) for _, v in passed_on)
    lowered = [(k.lower(), v) for k, v in passed_on]
    assert authn.from_certificate(proxy, lowered) == user
    # Bytes that are not UTF-8 are U+FFFD, as in the API server's JSON, not an error.
    odd = authn.from_certificate(proxy, [(b"x-remote-user", b"jos\xe9")])
    assert odd is not None and odd.name == "jos\ufffd"


def test_an_unreadable_ca_file_is_refused_naming_the_flag(tmp_path):
    bad = tmp_path / "ca.crt"
    bad.write_text("not a certificate")
    with pytest.raises(UsageError, match="--client-ca-file"):
        Authenticator(AuthenticationSettings(client_ca_file=bad), kube=None)
    with pytest.raises(UsageError, match=r"--requestheader-client-ca-file .*cannot read"):
        Authenticator(
            AuthenticationSettings(requestheader_client_ca_file=tmp_path / "missing.crt"),
            kube=None,
        )


def test_a_token_bucket_allows_its_burst_then_its_rate():
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.25  # half a token
    assert not bucket.take()
    now[0] += 0.25  # a whole one
    assert bucket.take() and not bucket.take()
    now[0] += 60.0  # refills to its burst, no more
    assert sum(bucket.take() for _ in range(10)) == 3


class _Reviews:
    """A Kube that answers every TokenReview: no user (an unknown token)."""

    def __init__(self) -> None:
        self.reviewed = 0

    def token_review(self, token: str) -> User | None:
        self.reviewed += 1
        return None


def test_new_tokens_of_one_address_spend_its_share_of_the_reviews_not_all_of_them():
    reviews = _Reviews()
    authn = Authenticator(AuthenticationSettings(), kube=reviews)  # type: ignore[arg-type]
    flood = 0
    with pytest.raises(TooManyTokenReviews):
        for flood in range(1000):
            authn.from_token(f"flood-{flood}", "10.0.0.66")
    assert flood == NEW_TOKEN_BURST_PER_ADDRESS < NEW_TOKEN_BURST
    assert reviews.reviewed == flood
    # Another client's new tokens are still reviewed, up to its own share.
    for other in range(int(NEW_TOKEN_BURST_PER_ADDRESS)):
        assert authn.from_token(f"other-{other}", "10.0.0.7") is None
    assert reviews.reviewed == flood + NEW_TOKEN_BURST_PER_ADDRESS
