"""The Kubernetes API as scaleahead uses it, through the official client: the
authentication ConfigMap, TokenReview and SubjectAccessReview, the APIService, the Secret
of the shared serving certificate, the HPAs with their targets' scale and pods, and the
Ready endpoints of its own Service (the peer replicas). Every call has a bounded timeout;
failures raise KubeError. manifests/base/rbac.yaml grants exactly these calls (a test
derives them from this module)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from adapter.errors import UsageError
from adapter.security.identity import Attributes, User

log = logging.getLogger(__name__)

TIMEOUT = (2.0, 5.0)
"""(connect, read) seconds for each call to the Kubernetes API."""


class KubeError(Exception):
    """The Kubernetes API could not answer."""


@dataclass(frozen=True)
class Endpoint:
    """One Ready endpoint of a Service: the pod it is (if it names one) and where."""

    pod: str | None
    address: str
    port: int


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


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(kubeconfig: Path | None) -> str:
    """The namespace scaleahead runs in: its pod's, else the kubeconfig context's."""
    if kubeconfig is None:
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        except OSError as err:
            raise UsageError(f"cannot tell the pod's namespace: {err}") from None
    try:
        _, active = config.list_kube_config_contexts(str(kubeconfig))
    except (ConfigException, OSError) as err:
        raise UsageError(f"--kubeconfig {kubeconfig}: {err}") from None
    return str((active or {}).get("context", {}).get("namespace") or "default")


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
        self.registration = client.ApiregistrationV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.apps = client.AppsV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    def bearer(self) -> str | None:
        """The Authorization header this client sends (a pod's: its renewed token), if any."""
        header = str(self.api.configuration.get_api_key_with_prefix("BearerToken") or "")
        return f"Bearer {t}" if (t := header.partition(" ")[2].strip()) else None

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

    def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str] | None, str | None]:
        """(data, resourceVersion) of a Secret, or (None, None) if there is none."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT)
        except ApiException as err:
            if err.status == 404:
                return None, None
            raise KubeError(_describe(err)) from None
        except Exception as err:
            raise KubeError(_describe(err)) from None
        data = {k: str(v) for k, v in (secret.data or {}).items()}
        return data, secret.metadata.resource_version if secret.metadata else None

    def write_secret(
        self, namespace: str, name: str, data: dict[str, str], version: str | None
    ) -> bool:
        """Create the Secret (version None) or replace the one at `version`; False if
        someone else created or changed it first."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                resource_version=version,
                labels={"app.kubernetes.io/name": "scaleahead"},
            ),
            type="kubernetes.io/tls",
            data=dict[str, bytes | str](data),
        )
        try:
            if version is None:
                self.core.create_namespaced_secret(namespace, body, _request_timeout=TIMEOUT)
            else:
                self.core.replace_namespaced_secret(name, namespace, body, _request_timeout=TIMEOUT)
        except ApiException as err:
            if err.status == 409:
                return False
            raise KubeError(_describe(err)) from None
        except Exception as err:
            raise KubeError(_describe(err)) from None
        return True

    def inject_ca_bundle(self, apiservice: str, namespace: str, ca: bytes) -> None:
        """Put `ca` into the APIService's caBundle if it routes to a Service in
        `namespace` (ours); leave it alone, with a warning, if it routes elsewhere."""
        try:
            api = self.registration.read_api_service(apiservice, _request_timeout=TIMEOUT)
        except Exception as err:
            raise KubeError(_describe(err)) from None
        ref = api.spec.service if api.spec is not None else None
        if ref is None or ref.namespace != namespace:
            where = f"{ref.namespace}/{ref.name}" if ref is not None else "no Service"
            log.warning(
                "APIService %s routes to %s, not to namespace %s: its caBundle is left alone",
                apiservice,
                where,
                namespace,
            )
            return
        bundle = base64.b64encode(ca).decode()
        if api.spec is not None and api.spec.ca_bundle == bundle:
            return
        try:
            self.registration.patch_api_service(
                apiservice, {"spec": {"caBundle": bundle}}, _request_timeout=TIMEOUT
            )
        except Exception as err:
            raise KubeError(_describe(err)) from None
        log.info("put the serving CA into APIService %s", apiservice)

    def apiservice_route(self, apiservice: str) -> tuple[str, str] | None:
        """(name, namespace) of the Service an APIService routes to; None if it routes to
        none (a local API)."""
        try:
            api = self.registration.read_api_service(apiservice, _request_timeout=TIMEOUT)
        except Exception as err:
            raise KubeError(_describe(err)) from None
        ref = api.spec.service if api.spec is not None else None
        return None if ref is None else (str(ref.name), str(ref.namespace))

    def list_hpas(self) -> tuple[list[dict[str, Any]], str]:
        """Every autoscaling/v2 HPA in the cluster (as JSON objects) and the list's
        resourceVersion, to watch from."""
        try:
            found = self.autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces(
                _request_timeout=TIMEOUT
            )
        except Exception as err:
            raise KubeError(_describe(err)) from None
        items = [self.api.sanitize_for_serialization(i) for i in found.items]
        meta = found.metadata
        return items, str(meta.resource_version if meta is not None else "")

    def watch_hpas(self, resource_version: str, seconds: int) -> Iterator[tuple[str, Any]]:
        """HPA events (ADDED, MODIFIED, DELETED with the object; ERROR with a Status)
        after `resource_version`, for at most `seconds`; raise KubeError."""
        stream = watch.Watch().stream(
            self.autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=seconds,
            allow_watch_bookmarks=False,
            _request_timeout=(TIMEOUT[0], seconds + 10),
        )
        try:
            for event in stream:
                obj = event["object"]
                yield (
                    event["type"],
                    (obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)),
                )
        except Exception as err:
            raise KubeError(_describe(err)) from None

    def scale_selector(self, namespace: str, kind: str, name: str) -> str | None:
        """The label selector of the pods a scale target runs (its scale subresource's
        status.selector, as the HPA controller reads it); None for a kind not known here."""
        read = {
            "Deployment": self.apps.read_namespaced_deployment_scale,
            "StatefulSet": self.apps.read_namespaced_stateful_set_scale,
            "ReplicaSet": self.apps.read_namespaced_replica_set_scale,
            "ReplicationController": self.core.read_namespaced_replication_controller_scale,
        }.get(kind)
        if read is None:
            return None
        try:
            scale = read(name, namespace, _request_timeout=TIMEOUT)
        except Exception as err:
            raise KubeError(_describe(err)) from None
        return scale.status.selector if scale.status is not None else None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods in `namespace` that `selector` picks, as JSON objects."""
        try:
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=TIMEOUT
            )
        except Exception as err:
            raise KubeError(_describe(err)) from None
        return [self.api.sanitize_for_serialization(p) for p in pods.items]

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[Endpoint]:
        """The Ready endpoints of a Service at its port named `port` (or its only one),
        from its EndpointSlices, as the aggregator routes to them."""
        selector = f"kubernetes.io/service-name={service}"
        try:
            slices = self.discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=selector, _request_timeout=TIMEOUT
            )
        except Exception as err:
            raise KubeError(_describe(err)) from None
        found = []
        for s in slices.items:
            ports = [p for p in s.ports or [] if p.name == port] or s.ports or []
            if len(ports) != 1 or ports[0].port is None:
                continue
            for e in s.endpoints or []:
                if e.conditions is None or e.conditions.ready is not False:
                    pod = e.target_ref.name if e.target_ref is not None else None
                    found += [Endpoint(pod, a, int(ports[0].port)) for a in e.addresses[:1]]
        return found


def _describe(err: Exception) -> str:
    if isinstance(err, ApiException):
        return f"the Kubernetes API answered {err.status} {err.reason}"
    return f"the Kubernetes API is unreachable ({type(err).__name__}: {err})"[:300]


APISERVICE = "v1beta1.external.metrics.k8s.io"
