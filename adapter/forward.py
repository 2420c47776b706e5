"""Forwarding: the external metrics no rule serves are answered by another external
metrics server (the one that owned the APIService before), as the aggregator would ask it."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from adapter.errors import Unavailable
from adapter.security.identity import User
from forecaster.config import ForwardConfig
from forecaster.sources.tls import client_context

log = logging.getLogger(__name__)

DISCOVERY_TTL = 30.0
"""Seconds the other server's list of metrics is reused for discovery."""

MAX_ANSWER = 4 * 2**20
"""Bytes of one answer taken from the other server; more is refused unread. An
ExternalMetricValueList of 10,000 series is about 2.5 MB."""

_PCHAR = "-._~!$&'()*+,;=:@"
"""Characters a path segment carries as they are (RFC 3986 pchar, less '%')."""


class TooLarge(Exception):
    """The other server's answer is larger than MAX_ANSWER."""


@dataclass(frozen=True)
class Answer:
    """The other server's response, passed on as it came."""

    code: int
    body: bytes
    content_type: str


def identity_headers(user: User) -> list[tuple[bytes, bytes]]:
    """The caller as the aggregator passes it to an extension API server: values as
    UTF-8 bytes (as Go writes its strings), extra keys percent-encoded."""
    headers = [(b"X-Remote-User", user.name)]
    headers += [(b"X-Remote-Group", g) for g in user.groups]
    for key, values in user.extra:
        # Header names are case-insensitive and limited to token characters: the key is
        # percent-encoded, as the API server does.
        name = b"X-Remote-Extra-" + quote(key.lower(), safe="-!#$&'*+.^_`|~").encode()
        headers += [(name, v) for v in values]
    return [(name, value.encode()) for name, value in headers]


class Forwarder:
    """Asks the configured server for what scaleahead does not serve. With a client
    certificate, as the aggregator: the caller in X-Remote-* headers; with a bearer token,
    as scaleahead itself (the caller was authorized here already)."""

    def __init__(self, config: ForwardConfig) -> None:
        self.config = config
        context = client_context(config.ca_file, config.client_cert_file, config.client_key_file)
        self._client = httpx.AsyncClient(
            base_url=config.url, verify=context, timeout=config.timeout
        )
        self._resources: list[dict[str, Any]] = []
        self._listed_at = -DISCOVERY_TTL
        self._down: str | None = None

    def _headers(self, user: User | None) -> list[tuple[bytes, bytes]]:
        headers = [(b"Accept", b"application/json")]
        if self.config.bearer_token_file is not None:
            # Re-read: a projected service-account token is rotated on disk.
            token = self.config.bearer_token_file.read_bytes().strip()
            headers.append((b"Authorization", b"Bearer " + token))
        elif user is not None:
            headers += identity_headers(user)
        return headers

    async def metric(
        self,
        group_version: str,
        namespace: str,
        metric: str,
        selectors: list[str],
        user: User | None,
    ) -> Answer:
        """The other server's answer for one external metric, asked by a URL built from
        these parts alone (each segment percent-encoded exactly, the label selectors as
        the only query); Unavailable when it cannot be had whole."""
        path = f"/apis/{group_version}/namespaces/{_segment(namespace)}/{_segment(metric)}"
        params = tuple(("labelSelector", s) for s in selectors)
        return await self._ask(path, params, user)

    async def _ask(
        self, path: str, params: tuple[tuple[str, str], ...], user: User | None
    ) -> Answer:
        try:
            with anyio.fail_after(self.config.timeout):
                async with self._client.stream(
                    "GET", path, params=params, headers=self._headers(user)
                ) as resp:
                    body = await _bounded(resp)
        except (httpx.HTTPError, OSError, TooLarge) as err:
            self._note_down(err)
            raise Unavailable(
                f"the external metric is not served by scaleahead, and the server it is "
                f"forwarded to ({self.config.url}) gives no usable answer: {_describe(err)}"
            ) from None
        self._note_up()
        return Answer(resp.status_code, body, resp.headers.get("content-type", ""))

    async def resources(self, group_version: str, user: User | None) -> list[dict[str, Any]]:
        """The other server's metrics (APIResourceList resources), refreshed at most every
        DISCOVERY_TTL seconds; the last list known while it cannot be reached."""
        now = time.monotonic()
        if now - self._listed_at < DISCOVERY_TTL:
            return self._resources
        self._listed_at = now
        try:
            answer = await self._ask(f"/apis/{group_version}", (), user)
            if answer.code != 200:
                raise ValueError(f"it answered {answer.code}")
            found = json.loads(answer.body).get("resources")
            if not isinstance(found, list):
                raise ValueError("no resources in its APIResourceList")
        except Unavailable:  # noted by _ask
            return self._resources
        except (ValueError, AttributeError) as err:
            self._note_down(err)
            return self._resources
        self._note_up()
        self._resources = [r for r in found if isinstance(r, dict) and "name" in r]
        return self._resources

    def _note_down(self, err: BaseException) -> None:
        why = _describe(err)
        if self._down is None:
            log.warning(
                "forwarding: %s gives no usable answer (%s); its metrics are answered 503 "
                "until it does, ours are unaffected",
                self.config.url,
                why,
            )
        self._down = why

    def _note_up(self) -> None:
        if self._down is not None:
            log.info("forwarding: %s answers again", self.config.url)
        self._down = None

    async def close(self) -> None:
        await self._client.aclose()


def _segment(name: str) -> str:
    """`name` as one path segment that decodes back to exactly `name`."""
    return quote(name, safe=_PCHAR)


async def _bounded(resp: httpx.Response) -> bytes:
    """The body of `resp`, or TooLarge as soon as it is known to exceed MAX_ANSWER."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER:
        raise TooLarge(f"it announced {int(declared):,} bytes, more than {MAX_ANSWER:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER:
            raise TooLarge(f"its answer is more than {MAX_ANSWER:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(err: BaseException) -> str:
    if isinstance(err, TooLarge):
        return str(err)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
