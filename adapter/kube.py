"""The Kubernetes API as scaleahead uses it, through the official client: the
authentication ConfigMap, TokenReview and SubjectAccessReview. Every call has a bounded
timeout; failures raise KubeError."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from adapter.errors import UsageError

log = logging.getLogger(__name__)

TIMEOUT = (2.0, 5.0)
"""(connect, read) seconds for each call to the Kubernetes API."""


class KubeError(Exception):
    """The Kubernetes API could not answer."""


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the Kubernetes API server derives it (RequestInfo)."""

    verb: str
    path: str
    resource: str | None = None  # None for a non-resource URL
    namespace: str = ""
    group: str = ""
    version: str = ""
    name: str = ""

    def describe(self) -> str:
        if self.resource is None:
            return f'{self.verb} on the non-resource URL "{self.path}"'
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return f'{self.verb} on resource "{self.resource}" of group "{self.group}"{where}'


@dataclass(frozen=True)
class AuthenticationConfigMap:
    """kube-system/extension-apiserver-authentication, as the API server publishes it."""

    client_ca: bytes
    requestheader_ca: bytes
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_headers_prefixes: tuple[str, ...]


def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """A client from `kubeconfig`, else the in-cluster service account; UsageError if neither."""
    cfg = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(str(kubeconfig), client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)
    except (ConfigException, OSError, TypeError, ValueError) as err:
        flag = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        raise UsageError(
            f"{flag}: cannot configure the Kubernetes client ({err}); the secure port "
            "authenticates and authorizes every request through the Kubernetes API: "
            "give --kubeconfig, or run in a cluster"
        ) from None
    return client.ApiClient(cfg)


def _json_list(data: dict[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key)
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class Kube:
    """The calls scaleahead makes to the Kubernetes API (see manifests' RBAC)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)

    def authentication_config_map(self) -> AuthenticationConfigMap:
        """Read kube-system/extension-apiserver-authentication."""
        try:
            cm = self.core.read_namespaced_config_map(
                "extension-apiserver-authentication", "kube-system", _request_timeout=TIMEOUT
            )
        except Exception as err:
            raise KubeError(_describe(err)) from None
        data: dict[str, str] = cm.data or {}
        return AuthenticationConfigMap(
            client_ca=data.get("client-ca-file", "").encode(),
            requestheader_ca=data.get("requestheader-client-ca-file", "").encode(),
            allowed_names=_json_list(data, "requestheader-allowed-names"),
            username_headers=_json_list(data, "requestheader-username-headers"),
            group_headers=_json_list(data, "requestheader-group-headers"),
            extra_headers_prefixes=_json_list(data, "requestheader-extra-headers-prefix"),
        )

    def token_review(self, token: str) -> User | None:
        """The user a bearer token belongs to, or None if the API server rejects it."""
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        try:
            review = self.authn.create_token_review(body, _request_timeout=TIMEOUT)
        except Exception as err:
            raise KubeError(_describe(err)) from None
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            return None
        u = status.user
        extra = tuple(sorted((k, tuple(v)) for k, v in (u.extra or {}).items()))
        return User(u.username or "", tuple(u.groups or ()), u.uid or "", extra)

    def access_review(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) from a SubjectAccessReview of `attrs` for `user`."""
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "uid": user.uid or None,
            "extra": {k: list(v) for k, v in user.extra} or None,
        }
        if attrs.resource is None:
            spec["non_resource_attributes"] = client.V1NonResourceAttributes(
                path=attrs.path, verb=attrs.verb
            )
        else:
            spec["resource_attributes"] = client.V1ResourceAttributes(
                group=attrs.group,
                version=attrs.version,
                resource=attrs.resource,
                namespace=attrs.namespace or None,
                name=attrs.name or None,
                verb=attrs.verb,
            )
        body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(**spec))
        try:
            review = self.authz.create_subject_access_review(body, _request_timeout=TIMEOUT)
        except Exception as err:
            raise KubeError(_describe(err)) from None
        status = review.status
        if status is None:
            return False, "the SubjectAccessReview came back without a status"
        return bool(status.allowed and not status.denied), status.reason or ""


def _describe(err: Exception) -> str:
    if isinstance(err, ApiException):
        return f"the Kubernetes API answered {err.status} {err.reason}"
    return f"the Kubernetes API is unreachable ({type(err).__name__}: {err})"[:300]


APISERVICE = "v1beta1.external.metrics.k8s.io"


def serving_names(kube: Kube) -> list[str]:
    """Names a self-signed serving certificate must carry: loopback, and the Service the
    APIService routes to (`<service>.<namespace>.svc`), when it can be read."""
    names = ["localhost", "127.0.0.1"]
    try:
        api = client.ApiregistrationV1Api(kube.api).read_api_service(
            APISERVICE, _request_timeout=TIMEOUT
        )
        ref = api.spec.service if api.spec is not None else None
    except Exception as err:
        log.info("APIService %s not readable (%s): certificate for loopback only", APISERVICE, err)
        return names
    if ref is not None:
        names += [
            f"{ref.name}.{ref.namespace}.svc",
            f"{ref.name}.{ref.namespace}.svc.cluster.local",
        ]
    return names
