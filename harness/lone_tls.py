"""scaleahead's TLS port with no cluster behind it, for measuring connections: the demo
rule, a self-signed serving certificate, callers proven by client certificates of our
own CA, and the metric path always allowed (authorization would need a SubjectAccessReview
from an API server; none answers here, the kubeconfig points at a closed loopback port)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from harness.pki import CA, Pair

METRIC = (
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"
    "?labelSelector=service%3Dnasa-http"
)

_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@dataclass
class LoneTLS:
    args: list[str]  # for `scaleahead`
    server_ca: Path  # the self-signed serving certificate's CA, once started
    client: Pair  # a certificate scaleahead authenticates

    def context(self, certificate: bool = True) -> ssl.SSLContext:
        """A client context trusting the server, presenting `client` if `certificate`."""
        context = ssl.create_default_context(cafile=str(self.server_ca))
        context.check_hostname = False
        if certificate:
            context.load_cert_chain(self.client.cert, self.client.key)
        return context


def lone_tls(root: Path, port: int) -> LoneTLS:
    """Arguments serving the demo on https://127.0.0.1:`port`, with files under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    ca = CA("clients", root / "clients")
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(_KUBECONFIG)
    args = [
        "serve",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={root / 'certs'}",
        f"--kubeconfig={kubeconfig}",
        "--authentication-skip-lookup",
        f"--client-ca-file={ca.cert}",
        "--authorization-always-allow-paths=/healthz,/livez,/readyz,"
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/*",
    ]
    return LoneTLS(args, root / "certs" / "ca.crt", ca.issue("hpa", "system:hpa"))
