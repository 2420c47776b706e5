"""Authentication and authorization of the secure port, as every extension API server
does them: the aggregator's front-proxy certificate with X-Remote-* headers, client
certificates of the cluster CA, bearer tokens through TokenReview, and a
SubjectAccessReview per (user, request attributes), cached briefly, failing closed."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio.to_thread
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from adapter.errors import UsageError, send_status
from adapter.kube import Attributes, AuthenticationConfigMap, Kube, KubeError, User

log = logging.getLogger(__name__)
access_log = logging.getLogger("scaleahead.access")

PEER_CERT = "scaleahead.peer_cert"
"""Key of the client certificate (DER, or None) in each request's ASGI state."""

CALLER = "scaleahead.caller"
"""Key of the authenticated and authorized caller (a User) in each request's ASGI state."""

LOOKUP_INTERVAL = 60.0
"""How often the authentication ConfigMap is re-read (seconds)."""

DEFAULT_ALWAYS_ALLOW = ("/healthz", "/livez", "/readyz", "/openapi/*", "/version")

_CACHE_SIZE = 10_000

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
class AuthenticationSettings:
    """The flags of authentication (--client-ca-file, --requestheader-*, ...)."""

    client_ca_file: Path | None = None
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    skip_lookup: bool = False
    token_cache_ttl: float = 10.0


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


class _TTLCache:
    """A small thread-safe LRU cache whose entries expire."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return False, None
            expires, value = hit
            if expires < time.monotonic():
                del self._data[key]
                return False, None
            self._data.move_to_end(key)
            return True, value

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


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
        self._certs = _TTLCache()
        self._tokens = _TTLCache()
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
                self._certs = _TTLCache()  # which CA issued a certificate may have changed
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
        """Look up now, then every LOOKUP_INTERVAL seconds in a background thread."""
        self.lookup()
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

    def from_token(self, token: str) -> User | None:
        """The user a bearer token belongs to (TokenReview, cached); blocking."""
        if self.kube is None:
            return None
        key = hashlib.sha256(token.encode()).digest()
        hit, value = self._tokens.get(key)
        if hit:
            return value  # type: ignore[no-any-return]
        user = self.kube.token_review(token)
        self._tokens.put(key, user, self.settings.token_cache_ttl)
        return user


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _user_from_headers(headers: list[tuple[bytes, bytes]], trust: _Trust) -> User | None:
    name = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
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


@dataclass(frozen=True)
class AuthorizationSettings:
    """The flags of authorization."""

    always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW
    allowed_ttl: float = 10.0
    denied_ttl: float = 10.0


class Authorizer:
    """SubjectAccessReview per (user, attributes), cached; the API unreachable denies."""

    def __init__(self, settings: AuthorizationSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self._cache = _TTLCache()

    def always_allowed(self, path: str) -> bool:
        return any(
            fnmatch.fnmatchcase(path, p) if p.endswith("*") else path == p
            for p in self.settings.always_allow_paths
        )

    def cached(self, user: User, attrs: Attributes) -> tuple[bool, str] | None:
        hit, value = self._cache.get((user, attrs))
        return value if hit else None  # type: ignore[no-any-return]

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); blocking on a cache miss."""
        cached = self.cached(user, attrs)
        if cached is not None:
            return cached
        try:
            allowed, reason = self.kube.access_review(user, attrs)
        except KubeError as err:
            return False, f"the authorization check failed, so access is denied: {err}"
        ttl = self.settings.allowed_ttl if allowed else self.settings.denied_ttl
        self._cache.put((user, attrs), (allowed, reason), ttl)
        return allowed, reason


def request_attributes(method: str, path: str, group_prefix: str = "/apis/") -> Attributes:
    """The attributes the Kubernetes API server derives for a request (its RequestInfo)."""
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 4 or parts[0] != "apis":
        return Attributes(verb=verb, path=path)
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    if method in ("GET", "HEAD"):
        verb = "get" if name else "list"
    return Attributes(
        verb=verb,
        path=path,
        resource=resource,
        namespace=namespace,
        group=group,
        version=version,
        name=name,
    )


@dataclass
class Guard:
    """ASGI middleware: authenticate, authorize, then call the app; log each request."""

    app: ASGIApp
    authenticator: Authenticator
    authorizer: Authorizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        code = [0]

        async def send_logged(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        user = await self._authenticate(scope)
        try:
            if self.authorizer.always_allowed(path):
                await self.app(scope, receive, send_logged)
                return
            if user is None:
                await send_status(send_logged, 401, "Unauthorized", "Unauthorized")
                return
            attrs = request_attributes(method, path)
            decision = self.authorizer.cached(user, attrs)
            if decision is None:
                decision = await anyio.to_thread.run_sync(self.authorizer.authorize, user, attrs)
            allowed, reason = decision
            if not allowed:
                why = f": {reason}" if reason else ""
                await send_status(
                    send_logged,
                    403,
                    "Forbidden",
                    f'user "{user.name}" cannot {attrs.describe()}{why}',
                )
                return
            scope["state"] = {**(scope.get("state") or {}), CALLER: user}
            await self.app(scope, receive, send_logged)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    'user="%s" verb=%s path="%s" code=%d latency=%.1fms',
                    user.name if user else "",
                    method,
                    path,
                    code[0],
                    (time.perf_counter() - start) * 1000,
                )

    async def _authenticate(self, scope: Scope) -> User | None:
        state = scope.get("state") or {}
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        user = self.authenticator.from_certificate(state.get(PEER_CERT), headers)
        if user is not None:
            return user
        for key, value in headers:
            if key == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    try:
                        return await anyio.to_thread.run_sync(
                            self.authenticator.from_token, token.strip()
                        )
                    except KubeError as err:
                        log.warning("token review failed: %s", err)
                        return None
        return None
