"""The configuration file: where Prometheus is, the rules, and how current values and
forwarding work. Every key's type and default is written here once."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from forecaster.config.rule import Rule
from forecaster.config.types import Duration, Strict, existing_file, positive
from forecaster.times import SETTLE, format_duration


class BasicAuth(Strict):
    """HTTP basic auth for Prometheus; the password is read from a file, never inlined."""

    username: str = Field(min_length=1)
    password_file: Path

    _check_file = field_validator("password_file")(existing_file)


class PrometheusConfig(Strict):
    """Where and how to query Prometheus' HTTP API."""

    url: str
    timeout: Duration = 10
    retries: int = Field(default=2, ge=0, le=10)
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    ca_file: Path | None = None

    _check_files = field_validator("bearer_token_file", "ca_file")(existing_file)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        parts = urlsplit(value)
        if "@" in parts.netloc or parts.query or parts.fragment or "?" in value:
            raise ValueError(
                "expected no credentials, query or fragment in the URL (a token there "
                "would show in errors, logs and /readyz): use basic_auth (username and "
                "password_file) or bearer_token_file"
            )
        return value.rstrip("/")

    _check_timeout = field_validator("timeout")(positive)

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusConfig:
        if self.bearer_token_file and self.basic_auth:
            raise ValueError("set bearer_token_file or basic_auth, not both")
        return self


class CurrentConfig(Strict):
    """How the current value of every series is kept in memory for the API."""

    interval: Duration = 15  # one instant query per rule this often
    max_age: Duration = 60  # older current values are not served as current

    @model_validator(mode="after")
    def _fresh_enough(self) -> CurrentConfig:
        if self.interval <= 0:
            raise ValueError("interval: expected a positive duration")
        if self.max_age < SETTLE + 2 * self.interval:
            raise ValueError(
                "max_age: expected at least two intervals plus the "
                f"{SETTLE}s a value settles before it is read "
                f"({format_duration(SETTLE + 2 * self.interval)}), so that one slow refresh "
                "does not make every current value stale"
            )
        return self


class ForwardConfig(Strict):
    """Another external metrics server (KEDA's metrics server, prometheus-adapter) that
    answers for the external metrics no rule serves, when scaleahead owns the APIService.

    scaleahead authenticates to it either as the aggregator does, with a client certificate
    its request-header CA signed, passing the caller in X-Remote-User / X-Remote-Group /
    X-Remote-Extra-*; or with a bearer token (its service account's), as itself."""

    url: str
    ca_file: Path | None = None  # the server's CA; default: the system's
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    bearer_token_file: Path | None = None
    timeout: Duration = 5

    _check_files = field_validator(
        "ca_file", "client_cert_file", "client_key_file", "bearer_token_file"
    )(existing_file)

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("expected an https:// URL (an external metrics server serves TLS)")
        if "@" in parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError("expected https://host[:port] only (no credentials, path or query)")
        return value.rstrip("/")

    _check_timeout = field_validator("timeout")(positive)

    @model_validator(mode="after")
    def _one_identity(self) -> ForwardConfig:
        cert = self.client_cert_file is not None or self.client_key_file is not None
        if cert and (self.client_cert_file is None or self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        if cert == (self.bearer_token_file is not None):
            raise ValueError(
                "give client_cert_file and client_key_file (a front-proxy client "
                "certificate: the caller's identity is passed on) or bearer_token_file "
                "(scaleahead's own identity), one of the two"
            )
        return self


class Config(Strict):
    """The whole configuration file."""

    prometheus: PrometheusConfig
    rules: list[Rule] = Field(min_length=1)
    current: CurrentConfig = CurrentConfig()
    forward: ForwardConfig | None = None

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} appears twice")
            seen.add(rule.name)
        return rules

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)
