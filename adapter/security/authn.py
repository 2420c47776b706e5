"""Authentication of the secure port, as every extension API server does it: the
aggregator's front-proxy certificate with X-Remote-* headers, client certificates of the
cluster CA, and bearer tokens through TokenReview (cached briefly). The CAs come from
flags or from kube-system/extension-apiserver-authentication, re-read in the background."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from adapter.cluster.kube import AuthenticationConfigMap, Kube, KubeError
from adapter.errors import UsageError
from adapter.security.cache import TTLCache
from adapter.security.identity import User
from adapter.security.options import AuthenticationSettings
from adapter.security.ratelimit import TokenBucket

log = logging.getLogger(__name__)

LOOKUP_INTERVAL = 60.0
"""How often the authentication ConfigMap is re-read (seconds)."""
NEW_TOKEN_RATE = 20.0
"""TokenReviews a second, on average, of tokens that have not authenticated lately (at
most NEW_TOKEN_BURST at once): each costs the API server a review, so a client sending a
new token with every request must not turn into as many reviews. Beyond, such requests
are refused with 429 and Retry-After, as the API server's own flow control answers."""
NEW_TOKEN_BURST = 40.0
NEW_TOKEN_RATE_PER_ADDRESS = 5.0
"""The part of NEW_TOKEN_RATE one client address may spend (NEW_TOKEN_BURST_PER_ADDRESS at
once): a client flooding new tokens from one address is refused beyond it, and leaves the
rest to others, such as a scraper whose projected token was just renewed (before, one
such client kept every new token out, the scraper's included, for as long as it went on)."""
NEW_TOKEN_BURST_PER_ADDRESS = 10.0
ADDRESSES_KEPT = 4096
"""Client addresses whose token review budget is remembered; the least recent go first."""
KNOWN_TOKEN_TTL = 3600.0
"""Seconds a token that authenticated stays known: its reviews, when its cached answer
expires, are never limited (a scraper's token is not refused because of someone else's)."""


class TooManyTokenReviews(Exception):
    """A request's bearer token would need a review beyond NEW_TOKEN_RATE."""


def _pem_certs(pem: bytes, what: str) -> tuple[x509.Certificate, ...]:
    if not pem.strip():
        return ()
    try:
        return tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as err:
        raise UsageError(f"{what}: not PEM certificates ({err})") from None


def _read(path: Path | None, flag: str) -> bytes:
    if path is None:
        return b""
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot read: {err.strerror}") from None


@dataclass(frozen=True)
class _Trust:
    """The CAs and names in force, from flags and the looked-up ConfigMap."""

    client_cas: tuple[x509.Certificate, ...] = ()
    requestheader_cas: tuple[x509.Certificate, ...] = ()
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("x-remote-user",)
    group_headers: tuple[str, ...] = ("x-remote-group",)
    extra_prefixes: tuple[str, ...] = ("x-remote-extra-",)
    pem: bytes = b""


def _issued_by(cert: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except (ValueError, TypeError, InvalidSignature):  # not this CA's
            continue
    return False


class Authenticator:
    """Who made a request: front-proxy certificate + headers, client certificate, or
    bearer token (TokenReview); None when none of them proves it."""

    def __init__(self, settings: AuthenticationSettings, kube: Kube | None) -> None:
        self.settings = settings
        self.kube = kube
        self._flag_client = _pem_certs(
            _read(settings.client_ca_file, "--client-ca-file"), "--client-ca-file"
        )
        self._flag_requestheader = _pem_certs(
            _read(settings.requestheader_client_ca_file, "--requestheader-client-ca-file"),
            "--requestheader-client-ca-file",
        )
        self._lookup: AuthenticationConfigMap | None = None
        self._lookup_error: str | None = None
        self._trust = self._combine()
        self._certs = TTLCache()
        self._tokens = TTLCache()
        self._known = TTLCache()  # tokens that authenticated within KNOWN_TOKEN_TTL
        self._new_reviews = TokenBucket(NEW_TOKEN_RATE, NEW_TOKEN_BURST)
        self._new_reviews_of: OrderedDict[str, TokenBucket] = OrderedDict()
        self._addresses_lock = threading.Lock()
        self._stop = threading.Event()

    # The trusted CAs -------------------------------------------------------------

    def _combine(self) -> _Trust:
        s, cm = self.settings, self._lookup
        client = self._flag_client
        requestheader = self._flag_requestheader
        allowed = s.requestheader_allowed_names
        users: tuple[str, ...] = ("x-remote-user",)
        groups: tuple[str, ...] = ("x-remote-group",)
        extras: tuple[str, ...] = ("x-remote-extra-",)
        if cm is not None:
            if not client:
                client = _pem_certs(cm.client_ca, "client-ca-file of the ConfigMap")
            if not requestheader:
                requestheader = _pem_certs(
                    cm.requestheader_ca, "requestheader-client-ca-file of the ConfigMap"
                )
                allowed = allowed or cm.allowed_names
                users = tuple(h.lower() for h in cm.username_headers) or users
                groups = tuple(h.lower() for h in cm.group_headers) or groups
                extras = tuple(h.lower() for h in cm.extra_headers_prefixes) or extras
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in (*requestheader, *client))
        return _Trust(client, requestheader, allowed, users, groups, extras, pem)

    def client_cas_pem(self) -> bytes:
        """Every CA a client certificate may chain to (for the TLS handshake)."""
        return self._trust.pem

    def lookup(self) -> None:
        """Read the authentication ConfigMap now; keep the last good one on failure."""
        if self.settings.skip_lookup or self.kube is None:
            return
        try:
            cm = self.kube.authentication_config_map()
            self._lookup_error = None
            if cm != self._lookup:
                self._lookup = cm
                self._trust = self._combine()
                self._certs = TTLCache()  # which CA issued a certificate may have changed
        except (KubeError, UsageError) as err:
            if self._lookup_error is None:
                log.warning(
                    "cannot read kube-system/extension-apiserver-authentication: %s; %s",
                    err,
                    "keeping the last one read"
                    if self._lookup
                    else "front-proxy requests are refused until it can be read",
                )
            self._lookup_error = str(err)

    def start(self) -> None:
        """Look up again every LOOKUP_INTERVAL seconds in a background thread (the first
        lookup, before the first handshake, is the caller's: `lookup`)."""
        if self.settings.skip_lookup or self.kube is None:
            return

        def loop() -> None:
            while not self._stop.wait(LOOKUP_INTERVAL):
                self.lookup()

        threading.Thread(target=loop, name="authn-lookup", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    # Requests ------------------------------------------------------------------

    def _certificate(self, der: bytes) -> tuple[str, x509.Certificate | None]:
        """('requestheader' | 'client' | '', parsed) for a verified peer certificate."""
        trust = self._trust
        hit, value = self._certs.get(der)
        if hit:
            return value  # type: ignore[no-any-return]
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return "", None
        kind = ""
        if _issued_by(cert, trust.requestheader_cas):
            kind = "requestheader"
        elif _issued_by(cert, trust.client_cas):
            kind = "client"
        self._certs.put(der, (kind, cert), 300.0)
        return kind, cert

    def from_certificate(
        self, der: bytes | None, headers: list[tuple[bytes, bytes]]
    ) -> User | None:
        """The user proved by the connection's certificate (no network calls)."""
        if not der:
            return None
        kind, cert = self._certificate(der)
        if cert is None or not kind:
            return None
        cn = _attr(cert, NameOID.COMMON_NAME)
        if kind == "client":
            orgs = tuple(_attr(cert, NameOID.ORGANIZATION_NAME))
            return User(cn[0] if cn else "", _authenticated(orgs))
        trust = self._trust
        if trust.allowed_names and not (set(cn) & set(trust.allowed_names)):
            return None
        return _user_from_headers(headers, trust)

    def from_token(self, token: str, address: str = "") -> User | None:
        """The user a bearer token belongs to (TokenReview, cached); blocking. Raises
        TooManyTokenReviews for a token not known lately beyond NEW_TOKEN_RATE, or beyond
        NEW_TOKEN_RATE_PER_ADDRESS from the client `address`."""
        if self.kube is None:
            return None
        key = hashlib.sha256(token.encode()).digest()
        hit, value = self._tokens.get(key)
        if hit:
            return value  # type: ignore[no-any-return]
        if not self._known.get(key)[0] and not (
            self._reviews_of(address).take() and self._new_reviews.take()
        ):
            raise TooManyTokenReviews
        user = self.kube.token_review(token)
        self._tokens.put(key, user, self.settings.token_cache_ttl)
        if user is not None:
            self._known.put(key, True, KNOWN_TOKEN_TTL)
        return user

    def _reviews_of(self, address: str) -> TokenBucket:
        """The budget of new token reviews of the client `address`."""
        with self._addresses_lock:
            bucket = self._new_reviews_of.pop(address, None)
            if bucket is None:
                bucket = TokenBucket(NEW_TOKEN_RATE_PER_ADDRESS, NEW_TOKEN_BURST_PER_ADDRESS)
                while len(self._new_reviews_of) >= ADDRESSES_KEPT:
                    self._new_reviews_of.popitem(last=False)
            self._new_reviews_of[address] = bucket
            return bucket


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _user_from_headers(headers: list[tuple[bytes, bytes]], trust: _Trust) -> User | None:
    name = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1").lower()  # a header name is ASCII
        # The API server writes names as they are, UTF-8 (what Go's strings hold); bytes
        # that are not UTF-8 become U+FFFD, as they do in its JSON.
        value = raw_value.decode("utf-8", errors="replace")
        if key in trust.username_headers and not name and value:
            name = value
        elif key in trust.group_headers:
            groups.append(value)
        else:
            for prefix in trust.extra_prefixes:
                if key.startswith(prefix):
                    extra.setdefault(unquote(key[len(prefix) :]), []).append(value)
    if not name:
        return None
    extras = tuple(sorted((k, tuple(v)) for k, v in extra.items()))
    return User(name, _authenticated(tuple(groups)), "", extras)


def _authenticated(groups: tuple[str, ...]) -> tuple[str, ...]:
    """Every authenticated user is in system:authenticated, as the API server adds it."""
    return groups if "system:authenticated" in groups else (*groups, "system:authenticated")
