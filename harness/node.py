"""A one-node Kubernetes cluster on which real pods run: the control plane of
harness.controlplane on a bridge of our own, kube-scheduler, kubelet and containerd
(with runc and the CNI bridge plugin, all from Debian), everything under one folder.

Addresses: the RFC 2544 benchmarking range, which cannot be anyone else's. Node n (the
first free one on this machine) has bridge `sa-node<n>` with pods in 198.18.<n>.0/24
(gateway .1, where the API server, the kubelet and the test's own servers listen) and
Services in 198.19.<n>.0/24. There is no kube-proxy and no cluster DNS (neither can be
built here): `route` programs a DNAT rule for each Service port that pods must reach,
and pods address Services by IP.

`stop` removes everything it made: processes by PID (the containers' shims included),
mounts under its folder, the pods' network namespaces, its DNAT rules and the bridge.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.controlplane import ControlPlane, stop_process
from harness.net import free_port

LOCKS = Path("/run/scaleahead-test")
NODE = "node-1"
CNI_BIN = Path("/usr/lib/cni")
# What a node needs besides the Kubernetes binaries: the program, and its Debian package.
TOOLS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "buildah": "buildah",
    "mmdebstrap": "mmdebstrap",
    "catatonit": "catatonit",
}


class NodeUnavailable(Exception):
    """This machine cannot run a node; the message says what is missing."""


def prerequisites() -> None:
    """Raise NodeUnavailable naming what a node needs and this machine lacks."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not (CNI_BIN / "bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        raise NodeUnavailable(
            f"missing Debian packages {', '.join(missing)} (scripts/test installs them)"
        )
    if os.geteuid() != 0:
        raise NodeUnavailable("a node needs root: kubelet, containerd and the bridge")


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


@dataclass
class Bridge:
    """The node's network: a Linux bridge with the gateway address, and the DNAT rules
    that stand in for kube-proxy."""

    index: int
    lock: IO[bytes]

    @property
    def name(self) -> str:
        return f"sa-node{self.index}"

    @property
    def gateway(self) -> str:
        return f"198.18.{self.index}.1"

    @property
    def pods(self) -> str:
        return f"198.18.{self.index}.0/24"

    @property
    def services(self) -> str:
        return f"198.19.{self.index}.0/24"

    @property
    def kubernetes_ip(self) -> str:
        """The ClusterIP of the `kubernetes` Service: the first of the range."""
        return f"198.19.{self.index}.1"

    @property
    def _comment(self) -> str:
        return f"scaleahead-test-{self.name}"

    @classmethod
    def claim(cls) -> Bridge:
        """The first node index no other run on this machine holds; its bridge made."""
        LOCKS.mkdir(parents=True, exist_ok=True)
        for index in range(32):
            lock = (LOCKS / f"node{index}.lock").open("wb")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            bridge = cls(index, lock)
            bridge.remove()  # what a run that was killed may have left
            _run("ip", "link", "add", bridge.name, "type", "bridge")
            _run("ip", "addr", "add", f"{bridge.gateway}/24", "dev", bridge.name)
            _run("ip", "link", "set", bridge.name, "up")
            return bridge
        raise NodeUnavailable(f"all 32 node slots under {LOCKS} are held")

    def route(self, service_ip: str, port: int, to: str) -> None:
        """Send what pods address to `service_ip:port` to `to` ("ip:port"): kube-proxy's
        job, for one Service port."""
        _run(
            "iptables", "-t", "nat", "-A", "PREROUTING", "-d", service_ip, "-p", "tcp",
            "--dport", str(port), "-m", "comment", "--comment", self._comment,
            "-j", "DNAT", "--to-destination", to,
        )  # fmt: skip

    def remove(self) -> None:
        """Delete our DNAT rules and the bridge (the pods' veths go with their netns)."""
        rules = _run("iptables", "-t", "nat", "-S", "PREROUTING", check=False).stdout
        for rule in rules.splitlines():
            if f'"{self._comment}"' in rule or f" {self._comment} " in f"{rule} ":
                _run("iptables", "-t", "nat", *rule.replace("-A", "-D", 1).split(), check=False)
        if _run("ip", "link", "show", self.name, check=False).returncode == 0:
            _run("ip", "link", "del", self.name)

    def release(self) -> None:
        self.remove()
        self.lock.close()

    def leftovers(self) -> list[str]:
        """What of this bridge is still on the machine (nothing, once released)."""
        left = []
        if _run("ip", "link", "show", self.name, check=False).returncode == 0:
            left.append(f"bridge {self.name}")
        rules = _run("iptables", "-t", "nat", "-S", "PREROUTING", check=False).stdout
        left += [f"rule {r}" for r in rules.splitlines() if self._comment in r]
        return left


class Node:
    """A control plane with one real node: `start`, then `kubectl`, `import_image`; `stop`
    leaves nothing behind. Images are imported from OCI archives (no registry)."""

    def __init__(self, root: Path, kubectl: str) -> None:
        prerequisites()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.bridge = Bridge.claim()
        try:
            self.plane = ControlPlane(root / "k8s", kubectl, self.bridge)
        except BaseException:
            self.bridge.release()
            raise
        self.socket = root / "containerd.sock"
        self._containerd: subprocess.Popen[bytes] | None = None
        self._kubelet: subprocess.Popen[bytes] | None = None
        self._scheduler: subprocess.Popen[bytes] | None = None
        self._netns: set[str] = set()
        self._stopped = False

    # --- what tests use -------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The real kubectl as the cluster's admin."""
        return self.plane.kubectl(*args, input=input, check=check)

    def ctr(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def import_image(self, ref: str, archive: Path) -> None:
        """Make an image (an OCI archive named `ref`) available to pods, which must use
        `imagePullPolicy: Never` or `IfNotPresent`."""
        self.ctr("images", "import", f"--base-name={ref.rsplit(':', 1)[0]}", str(archive))
        if ref not in self.ctr("images", "list", "--quiet").split():
            raise RuntimeError(f"importing {archive} did not give image {ref}")

    # --- start ----------------------------------------------------------------------
    def start(self, pause: tuple[str, Path], timeout: float = 120) -> None:
        try:
            self._start(pause, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, pause: tuple[str, Path], timeout: float) -> None:
        self._start_containerd(pause[0])
        self.import_image(*pause)
        self.plane.start()
        self.plane.start_controller_manager()
        # Pods reach the API server at the `kubernetes` Service, as in any cluster.
        self.bridge.route(
            self.bridge.kubernetes_ip, 443, f"{self.bridge.gateway}:{self.plane.port}"
        )
        self._start_scheduler()
        _make_cgroups(self.bridge.name)
        self._start_kubelet()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.kubectl("get", "node", NODE, "-o", "json", check=False)
            if got.returncode == 0:
                conditions = json.loads(got.stdout)["status"].get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return
            for name, proc in (("kubelet", self._kubelet), ("containerd", self._containerd)):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            time.sleep(1)
        raise TimeoutError(f"node not Ready after {timeout}s: {self.log_tail('kubelet')}")

    def _log(self, name: str) -> IO[bytes]:
        return (self.root / f"{name}.log").open("wb")

    def log_tail(self, name: str, size: int = 3000) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def _start_containerd(self, pause: str) -> None:
        cni = self.root / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": self.bridge.name,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge.name,
                            "isGateway": True,
                            "isDefaultGateway": True,  # Service IPs go via the host
                            "ipMasq": False,  # nothing leaves the machine
                            "ipam": {
                                "type": "host-local",
                                "ranges": [
                                    [{"subnet": self.bridge.pods, "gateway": self.bridge.gateway}]
                                ],
                                "dataDir": str(cni / "ipam"),
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            )
        )
        config = self.root / "containerd.toml"
        config.write_text(
            f"""version = 2
root = "{self.root / "containerd"}"
state = "{self.root / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root / "containerd-opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj to what the pause
  # container asks for, and every sandbox would fail without this.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""
        )
        self._containerd = subprocess.Popen(
            ["containerd", f"--config={config}"],
            stdout=self._log("containerd"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self._containerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {self.log_tail('containerd')}")
            time.sleep(0.2)

    def _start_scheduler(self) -> None:
        cert = self.plane.ca.issue("scheduler", "system:kube-scheduler")
        kubeconfig = self.plane.kubeconfig("scheduler", cert)
        self._scheduler = subprocess.Popen(
            [
                self.plane.bins["kube-scheduler"],
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
            stdout=self._log("kube-scheduler"),
            stderr=subprocess.STDOUT,
        )

    def _start_kubelet(self) -> None:
        plane, gateway = self.plane, self.bridge.gateway
        client = plane.ca.issue("kubelet", f"system:node:{NODE}", orgs=("system:nodes",))
        serving = plane.ca.issue("kubelet-serving", NODE, hosts=(gateway,), server=True)
        kubeconfig = plane.kubeconfig("kubelet", client)
        config = self.root / "kubelet.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": gateway,
                    "port": free_port(),
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": free_port(),
                    "tlsCertFile": str(serving.cert),
                    "tlsPrivateKeyFile": str(serving.key),
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(plane.ca.cert)},
                    },
                    "authorization": {"mode": "Webhook"},
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{self.bridge.name}",
                    "containerRuntimeEndpoint": f"unix://{self.socket}",
                    "failSwapOn": False,
                    "podCIDR": self.bridge.pods,
                    "resolvConf": "",
                    "enforceNodeAllocatable": [],
                    "evictionHard": {
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "memory.available": "100Mi",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    "syncFrequency": "10s",
                    "fileCheckFrequency": "10s",
                    "nodeStatusReportFrequency": "10s",
                    "registerNode": True,
                    "makeIPTablesUtilChains": False,
                    "localStorageCapacityIsolation": True,
                }
            )
        )
        self._kubelet = subprocess.Popen(
            [
                plane.bins["kubelet"],
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root / 'kubelet'}",
                f"--cert-dir={self.root / 'kubelet-pki'}",
                f"--node-ip={gateway}",
                f"--hostname-override={NODE}",
                "--v=1",
            ],
            stdout=self._log("kubelet"),
            stderr=subprocess.STDOUT,
        )

    # --- stop -----------------------------------------------------------------------
    def _sandbox_netns(self) -> set[str]:
        """The network namespaces of the pods' sandboxes (containerd made them under
        /var/run/netns): what we delete once containerd is gone."""
        found: set[str] = set()
        with contextlib.suppress(Exception):
            for cid in self.ctr("containers", "list", "--quiet", timeout=20).split():
                info = json.loads(self.ctr("containers", "info", cid, timeout=20))
                for ns in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                    path = ns.get("path", "")
                    # A container joins its sandbox's namespace through /proc: not ours.
                    if ns.get("type") == "network" and path.startswith(("/run/", "/var/run/")):
                        found.add(path)
        return found

    def _shims(self) -> list[int]:
        """PIDs of the containerd shims serving our socket."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"containerd-shim" in cmdline[0] and str(self.socket).encode() in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Stop everything this node started and remove what it made (once)."""
        if self._stopped:
            return
        self._stopped = True
        stop_process(self._kubelet, grace=10)
        stop_process(self._scheduler, grace=5)
        self._netns |= self._sandbox_netns()
        shims = self._shims()
        stop_process(self._containerd, grace=10)
        _kill_cgroup(self.bridge.name)  # every container: they live under cgroupRoot
        for pid in shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.plane.stop()
        _unmount_under(self.root)
        for path in self._netns:
            _run("umount", path, check=False)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        _remove_cgroups(self.bridge.name)
        self.bridge.release()

    def leftovers(self) -> list[str]:
        """What this node made that is still there after `stop`: processes, mounts,
        network namespaces, cgroups, the bridge and its rules. Empty when clean."""
        left = [
            f"{name} (pid {proc.pid})"
            for name, proc in (
                ("kubelet", self._kubelet),
                ("kube-scheduler", self._scheduler),
                ("containerd", self._containerd),
            )
            if proc is not None and proc.poll() is None
        ]
        left += [f"shim {pid}" for pid in self._shims()]
        mounts = Path("/proc/mounts").read_text().split()
        left += [f"mount {m}" for m in mounts if m.startswith(f"{self.root}/")]
        left += [f"netns {path}" for path in self._netns if os.path.exists(path)]
        left += [
            f"cgroup {h / self.bridge.name}"
            for h in Path("/sys/fs/cgroup").iterdir()
            if (h / self.bridge.name).exists()
        ]
        return left + self.bridge.leftovers()


def _kill_cgroup(name: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in the kubelet's cgroup tree until none is left."""
    top = Path("/sys/fs/cgroup/pids") / name
    if not top.is_dir():
        top = Path("/sys/fs/cgroup/memory") / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = {
            int(pid) for procs in top.rglob("cgroup.procs") for pid in procs.read_text().split()
        }
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise RuntimeError(f"processes left in cgroup {top} after {timeout}s")


def _unmount_under(root: Path) -> None:
    """Unmount every mount point under `root`, deepest first."""
    for _ in range(3):
        mounts = [
            line.split()[1].encode().decode("unicode_escape")
            for line in Path("/proc/mounts").read_text().splitlines()
        ]
        ours = sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True)
        if not ours:
            return
        for mount in ours:
            _run("umount", "--lazy", mount, check=False)


def _make_cgroups(name: str) -> None:
    """The kubelet's `cgroupRoot` in every hierarchy (it must exist before it starts);
    a cpuset cgroup needs its CPUs and memory nodes given, as its parent's."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not (hierarchy / "cgroup.procs").exists():
            continue
        (hierarchy / name).mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists():
                (hierarchy / name / knob).write_text((hierarchy / knob).read_text())


def _remove_cgroups(name: str) -> None:
    """Remove the kubelet's cgroup tree (`cgroupRoot`) from every hierarchy, leaves first."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
