"""Container images built as users build them: buildah from the project's Dockerfile,
with vfs storage under `.cache/images` (no daemon, no registry).

No base image can be pulled here, so the Dockerfile's `FROM` image is stood in for by a
Debian 12 root file system from mmdebstrap (Python 3.11, with `python` and `pip` where
the official image has them), committed under the `FROM` name; the Dockerfile stays
what users build. Every image is kept as an OCI archive keyed on what goes into it, so
a run rebuilds only when an input changed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

from harness.net import REPO

CACHE = REPO / ".cache" / "images"
STORAGE = CACHE / "storage"
# What the Dockerfile's build reads (its COPY lines); a change to any of them is a new image.
PROJECT_INPUTS = ("Dockerfile", "constraints.txt", "pyproject.toml", "README.md")
PROJECT_TREES = ("adapter", "forecaster")
PAUSE = "localhost/scaleahead-test/pause:1"


class MissingTools(Exception):
    """A program the images need is not installed; the message names its package."""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingTools(
            f"{name}: not on PATH (Debian package {package}; scripts/test installs it)"
        )
    return path


def buildah(*args: str, timeout: float = 1200) -> str:
    """Run buildah on the project's own storage; its stdout, or CalledProcessError."""
    cmd = [
        _tool("buildah", "buildah"),
        "--storage-driver=vfs",
        f"--root={STORAGE / 'root'}",
        f"--runroot={STORAGE / 'run'}",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"buildah {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def _has_image(name: str) -> bool:
    return bool(buildah("images", "--quiet", "--filter", f"reference={name}").strip())


def base_image() -> str:
    """The image the Dockerfile builds from (both stages use the same one)."""
    [name] = set(re.findall(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M))
    return name if "/" in name else f"docker.io/library/{name}"


def _stand_in_base(name: str) -> None:
    """A Debian 12 root file system with Python 3.11 committed as `name`, where the
    official image cannot be pulled: `python` and `pip` on PATH, pip allowed to install
    into the system as it is in the official image."""
    if _has_image(name):
        return
    tar = CACHE / "debian-bookworm-python.tar"
    if not tar.exists():
        partial = CACHE / "debian-bookworm-python.partial.tar"  # mmdebstrap: tar by its name
        hook = (
            'rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED; '
            'ln -sf /usr/bin/python3 "$1"/usr/local/bin/python; '
            'ln -sf /usr/bin/pip3 "$1"/usr/local/bin/pip; '
            'rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*'
        )
        subprocess.run(
            [
                _tool("mmdebstrap", "mmdebstrap"),
                "--quiet",
                "--variant=apt",
                "--format=tar",
                "--include=python3,python3-pip,python3-venv,ca-certificates",
                f"--customize-hook={hook}",
                "bookworm",
                str(partial),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial.rename(tar)
    container = buildah("from", "scratch").strip()
    try:
        buildah("add", container, str(tar), "/")
        buildah(
            "config",
            "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env=LANG=C.UTF-8",
            "--cmd=python3",
            container,
        )
        buildah("commit", "--quiet", container, name)
    finally:
        buildah("rm", container)
    tar.unlink()  # the committed image holds it now


def _project_key() -> str:
    digest = hashlib.sha256()
    for name in PROJECT_INPUTS:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes())
    for tree in PROJECT_TREES:
        for path in sorted((REPO / tree).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    digest.update(base_image().encode() + b"\0" + project_version().encode())
    return digest.hexdigest()[:16]


def _archive(name: str, tag: str) -> Path:
    path = CACHE / f"{name.replace('/', '_')}-{tag}.oci.tar"
    return path


def project_version() -> str:
    """The version the image is built as: the installed package's (from the git tag,
    by setuptools-scm), as a release builds it."""
    return importlib.metadata.version("scaleahead")


def project_image() -> tuple[str, Path]:
    """The project's image, built from its Dockerfile unless an archive of the same
    inputs exists: its reference and its OCI archive."""
    _tool("mmdebstrap", "mmdebstrap")
    tag = _project_key()
    ref = f"localhost/scaleahead:{tag}"
    archive = _archive("scaleahead", tag)
    if archive.exists():
        return ref, archive
    CACHE.mkdir(parents=True, exist_ok=True)
    _stand_in_base(base_image())
    buildah(
        "bud",
        "--isolation=chroot",
        "--network=host",
        "--pull-never",
        "--layers=false",
        # pip in the build reaches the package registry through this machine's CAs.
        "--volume=/etc/ssl/certs:/etc/ssl/certs:ro",
        f"--build-arg=VERSION={project_version()}",
        f"--tag={ref}",
        str(REPO),
    )
    _export(ref, archive)
    # The archive is the cache: no copy stays in the (vfs, so uncompressed) storage, and
    # no archive of older inputs.
    buildah("rmi", ref)
    buildah("rmi", "--prune")  # the build stage's unnamed image
    for old in CACHE.glob("scaleahead-*.oci.tar"):
        if old != archive:
            old.unlink()
    return ref, archive


def pause_image() -> tuple[str, Path]:
    """The pod sandbox's image, from scratch: Debian's static catatonit as /pause in
    pause mode (what registry.k8s.io/pause does)."""
    catatonit = _tool("catatonit", "catatonit")
    archive = _archive("pause", "1")
    if archive.exists():
        return PAUSE, archive
    CACHE.mkdir(parents=True, exist_ok=True)
    container = buildah("from", "scratch").strip()
    try:
        buildah("copy", "--chmod=0755", container, catatonit, "/pause")
        buildah("config", '--entrypoint=["/pause", "-P"]', "--user=65535:65535", container)
        buildah("commit", "--quiet", container, PAUSE)
    finally:
        buildah("rm", container)
    _export(PAUSE, archive)
    return PAUSE, archive


def _export(ref: str, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    buildah("push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
    partial.rename(archive)
