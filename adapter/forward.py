"""Forwarding: the external metrics no rule serves are answered by another external
metrics server (the one that owned the APIService before), as the aggregator would ask it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from adapter.errors import Unavailable
from adapter.security.identity import User
from forecaster.config import ForwardConfig
from forecaster.sources.tls import client_context

log = logging.getLogger(__name__)

DISCOVERY_TTL = 30.0
"""Seconds the other server's list of metrics is reused for discovery."""


@dataclass(frozen=True)
class Answer:
    """The other server's response, passed on as it came."""

    code: int
    body: bytes
    content_type: str


def identity_headers(user: User) -> list[tuple[str, str]]:
    """The caller as the aggregator passes it to an extension API server."""
    headers = [("X-Remote-User", user.name)]
    headers += [("X-Remote-Group", g) for g in user.groups]
    for key, values in user.extra:
        # Header names are case-insensitive and limited to token characters: the key is
        # percent-encoded, as the API server does.
        name = "X-Remote-Extra-" + quote(key.lower(), safe="-!#$&'*+.^_`|~")
        headers += [(name, v) for v in values]
    return headers


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

    def _headers(self, user: User | None) -> list[tuple[str, str]]:
        headers = [("Accept", "application/json")]
        if self.config.bearer_token_file is not None:
            # Re-read: a projected service-account token is rotated on disk.
            token = self.config.bearer_token_file.read_text().strip()
            headers.append(("Authorization", f"Bearer {token}"))
        elif user is not None:
            headers += identity_headers(user)
        return headers

    async def get(self, path: str, query: str, user: User | None) -> Answer:
        """The other server's answer to GET path?query; Unavailable when it cannot be had."""
        url = f"{path}?{query}" if query else path
        try:
            resp = await self._client.get(url, headers=self._headers(user))
        except (httpx.HTTPError, OSError) as err:
            self._note_down(err)
            raise Unavailable(
                f"the external metric is not served by scaleahead, and the server it is "
                f"forwarded to ({self.config.url}) cannot be reached: {_describe(err)}"
            ) from None
        self._note_up()
        return Answer(resp.status_code, resp.content, resp.headers.get("content-type", ""))

    async def resources(self, group_version: str, user: User | None) -> list[dict[str, Any]]:
        """The other server's metrics (APIResourceList resources), refreshed at most every
        DISCOVERY_TTL seconds; the last list known while it cannot be reached."""
        now = time.monotonic()
        if now - self._listed_at < DISCOVERY_TTL:
            return self._resources
        self._listed_at = now
        try:
            resp = await self._client.get(f"/apis/{group_version}", headers=self._headers(user))
            resp.raise_for_status()
            found = resp.json().get("resources")
            if not isinstance(found, list):
                raise ValueError("no resources in its APIResourceList")
        except (httpx.HTTPError, OSError, ValueError) as err:
            self._note_down(err)
            return self._resources
        self._note_up()
        self._resources = [r for r in found if isinstance(r, dict) and "name" in r]
        return self._resources

    def _note_down(self, err: BaseException) -> None:
        why = _describe(err)
        if self._down is None:
            log.warning(
                "forwarding: %s cannot be reached (%s); its metrics are answered 503 until it "
                "can, ours are unaffected",
                self.config.url,
                why,
            )
        self._down = why

    def _note_up(self) -> None:
        if self._down is not None:
            log.info("forwarding: %s reachable again", self.config.url)
        self._down = None

    async def close(self) -> None:
        await self._client.aclose()


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
