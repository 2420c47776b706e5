"""A real Kubernetes control plane on loopback: etcd, kube-apiserver v1.28 with the
aggregation layer, and (on demand) kube-controller-manager for the HPA controller. Given
a `Bridge` (harness.node), the API server listens on its gateway instead, for the pods
of a real node.

The binaries come from `$SCALEAHEAD_K8S_ASSETS` or `$KUBEBUILDER_ASSETS` (a folder holding
kube-apiserver, kube-controller-manager and optionally etcd), else they are unpacked once
from `../shared/k8s/*.xz` into `.cache/k8s/` after checking their published sha256.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from harness.net import REPO, free_port
from harness.pki import CA, Pair, service_account_keys

if TYPE_CHECKING:
    from harness.node import Bridge

SHARED_K8S = REPO.parent / "shared" / "k8s"
CACHE = REPO / ".cache" / "k8s"
SHA256 = {
    "kube-apiserver": "474f85bff010fe9f77bd2ebe4fdc0252f131195392a8b80f79a1b3280325c64f",
    "kube-controller-manager": "00b79aebf85717780c39d43836e383779f1ac277f9ac44206fe85dcb75d43010",
    "kube-scheduler": "7ddfe69e1e1c26904fb81e4c3b2c8eb232e597a3df9a77b79d2f1c60d95b2df2",
    "kubelet": "45f1806f361c89b06512bd82d0e005247076793d8d457c8c538944a0b881d205",
}
FRONT_PROXY_CLIENT = "front-proxy-client"


class MissingAssets(Exception):
    """The control plane's binaries are not on this machine; the message names what is missing."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unpack(name: str) -> Path:
    target = CACHE / name
    if target.exists():
        return target
    packed = SHARED_K8S / f"{name}.xz"
    if not packed.is_file():
        raise MissingAssets(
            f"{name}: neither $SCALEAHEAD_K8S_ASSETS nor $KUBEBUILDER_ASSETS is set and "
            f"{packed} does not exist"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with lzma.open(packed) as src, partial.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = _sha256(partial)
    if digest != SHA256[name]:
        partial.unlink()
        raise MissingAssets(f"{packed}: sha256 {digest} is not the published {SHA256[name]}")
    partial.chmod(0o755)
    partial.rename(target)
    return target


def assets(node: bool = False) -> dict[str, str]:
    """Paths of etcd, kube-apiserver and kube-controller-manager (with `node`, also
    kube-scheduler and kubelet), or MissingAssets."""
    folder = os.environ.get("SCALEAHEAD_K8S_ASSETS") or os.environ.get("KUBEBUILDER_ASSETS")
    found: dict[str, str] = {}
    names = ["kube-apiserver", "kube-controller-manager"]
    if node:
        names += ["kube-scheduler", "kubelet"]
    for name in names:
        if folder:
            path = Path(folder) / name
            if not path.is_file():
                raise MissingAssets(f"{name}: not in {folder}")
            found[name] = str(path)
        else:
            found[name] = str(_unpack(name))
    etcd = (Path(folder) / "etcd") if folder else None
    if etcd is not None and etcd.is_file():
        found["etcd"] = str(etcd)
    elif shutil.which("etcd"):
        found["etcd"] = str(shutil.which("etcd"))
    else:
        raise MissingAssets(
            "etcd: not on PATH (Debian package etcd-server; scripts/test installs it)"
        )
    return found


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) under `root`, on free loopback
    ports; with `bridge`, the API server is on the bridge's gateway, for a real node."""

    def __init__(self, root: Path, kubectl: str, bridge: Bridge | None = None) -> None:
        self.root = root
        self.kubectl_path = kubectl
        self.bridge = bridge
        self.bins = assets(node=bridge is not None)
        self.address = bridge.gateway if bridge else "127.0.0.1"
        pki = root / "pki"
        self.ca = CA("cluster-ca", pki)
        self.front_proxy_ca = CA("front-proxy-ca", pki)
        hosts = ("127.0.0.1", "localhost", "kubernetes.default.svc")
        if bridge is not None:
            hosts += (bridge.gateway, bridge.kubernetes_ip)
        self.serving = self.ca.issue("apiserver", "kube-apiserver", hosts=hosts, server=True)
        self.front_proxy_client = self.front_proxy_ca.issue(
            "front-proxy-client", FRONT_PROXY_CLIENT
        )
        self.admin = self.ca.issue("admin", "admin", orgs=("system:masters",))
        self.controller_manager_cert = self.ca.issue(
            "controller-manager", "system:kube-controller-manager"
        )
        self.sa = service_account_keys(pki)
        self.port = free_port()
        self.url = f"https://{self.address}:{self.port}"
        self.admin_kubeconfig = self.kubeconfig("admin", self.admin)
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._controller_manager: subprocess.Popen[bytes] | None = None

    def kubeconfig(
        self,
        name: str,
        user: Pair | None = None,
        token: str | None = None,
        namespace: str = "default",
    ) -> Path:
        """A kubeconfig for this API server as a client certificate or a bearer token."""
        if user is not None:
            creds = f"client-certificate: {user.cert}\n    client-key: {user.key}"
        elif token is not None:
            creds = f"token: {token}"
        else:
            raise ValueError("a kubeconfig needs a certificate or a token")
        path = self.root / f"{name}.kubeconfig"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.url}\n"
            f"    certificate-authority: {self.ca.cert}\n"
            f"users:\n- name: {name}\n  user:\n    {creds}\n"
            f"contexts:\n- name: test\n  context: {{cluster: test, user: {name}, "
            f"namespace: {namespace}}}\n"
            "current-context: test\n"
        )
        return path

    def _log(self, name: str):
        return (self.root / f"{name}.log").open("wb")

    def start(self, timeout: float = 60.0) -> None:
        etcd_port, peer_port = free_port(), free_port()
        self._etcd = subprocess.Popen(
            [
                self.bins["etcd"],
                "--name=test",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
            stdout=self._log("etcd"),
            stderr=subprocess.STDOUT,
        )
        pki = self.root / "pki"
        if self.bridge is None:
            # No endpoint can hold a loopback address: APIServices reach their backends
            # through ExternalName Services instead.
            where = [
                "--service-cluster-ip-range=10.96.0.0/24",
                "--endpoint-reconciler-type=none",
                "--enable-aggregator-routing=false",
            ]
        else:
            kubelet_client = self.ca.issue(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                orgs=("system:masters",),
            )
            where = [
                f"--service-cluster-ip-range={self.bridge.services}",
                "--endpoint-reconciler-type=lease",
                # APIService backends are reached at their pods' IPs: there is no kube-proxy.
                "--enable-aggregator-routing=true",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={self.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        self._apiserver = subprocess.Popen(
            [
                self.bins["kube-apiserver"],
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca.cert}",
                f"--requestheader-client-ca-file={self.front_proxy_ca.cert}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.front_proxy_client.cert}",
                f"--proxy-client-key-file={self.front_proxy_client.key}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={self.sa.cert}",
                f"--service-account-signing-key-file={self.sa.key}",
                *where,
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
            stdout=self._log("kube-apiserver"),
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(self.admin.cert, self.admin.key)
        with httpx.Client(verify=context) as client:
            while time.monotonic() < deadline:
                assert self._apiserver is not None
                if self._apiserver.poll() is not None:
                    raise RuntimeError(f"kube-apiserver exited: {self.log_tail('kube-apiserver')}")
                try:
                    r = client.get(f"{self.url}/readyz", timeout=2.0)
                    if r.status_code == 200:
                        return
                    last = r.text[-300:]
                except httpx.HTTPError as err:
                    last = str(err)
                time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s: {last}")

    def start_controller_manager(self) -> None:
        """Start the controllers (the HPA controller syncs every 2 s) once."""
        if self._controller_manager is not None and self._controller_manager.poll() is None:
            return
        kubeconfig = self.kubeconfig("controller-manager", self.controller_manager_cert)
        self._controller_manager = subprocess.Popen(
            [
                self.bins["kube-controller-manager"],
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--root-ca-file={self.ca.cert}",
                f"--service-account-private-key-file={self.sa.key}",
                "--controllers=*",
                "--horizontal-pod-autoscaler-sync-period=2s",
            ],
            stdout=self._log("kube-controller-manager"),
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, name: str, size: int = 2000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        return subprocess.run(
            [self.kubectl_path, f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
            env=env,
        )

    def can_i(
        self,
        verb: str,
        what: str,
        as_user: str,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        """The API server's own authorization decision (`kubectl auth can-i`)."""
        where = [f"--namespace={namespace}"] if namespace else []
        if subresource:
            where.append(f"--subresource={subresource}")
        out = self.kubectl("auth", "can-i", verb, what, f"--as={as_user}", *where, check=False)
        return out.stdout.strip() == "yes"

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def stop_apiserver(self) -> None:
        stop_process(self._apiserver)

    def stop(self) -> None:
        stop_process(self._controller_manager, grace=5)
        stop_process(self._apiserver)
        stop_process(self._etcd)
