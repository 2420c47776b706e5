"""The container image: the Dockerfile lints clean, installs from the same pins as the
README's commands, and, where a Docker engine runs, builds and answers --help."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO, venv_tool

DOCKERFILE = REPO / "Dockerfile"


def test_hadolint_finds_nothing():
    run = subprocess.run([venv_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_one_source_of_pins():
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(bases) == 2 and len(set(bases)) == 1  # multi-stage, one base
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases[0]
    assert "--constraint constraints.txt" in text
    assert 'ENTRYPOINT ["scaleahead", "serve"]' in text
    assert re.search(r"^USER \d+:\d+$", text, re.M)  # numeric: runAsNonRoot can check it
    readme = (REPO / "README.md").read_text()
    script = (REPO / "scripts" / "test").read_text()
    assert "pip install -c constraints.txt" in readme and "-c constraints.txt" in script
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for package in ("fastapi", "statsforecast", "uvicorn", "kubernetes", "prometheus_client"):
        assert package in pins, package


def _engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True).returncode == 0


def test_the_image_builds_and_runs():
    if not _engine():
        # The docker client may be installed without an engine (as on this project's
        # machines): say so. Where an engine runs, CI builds the image.
        pytest.skip("no Docker engine answers `docker info`: the image is not built here")
    tag = "scaleahead:test"
    subprocess.run(["docker", "build", "-t", tag, str(REPO)], check=True, timeout=1200)
    run = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--user", "65532:65532", tag, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "--secure-port" in run.stdout and "--cert-secret" in run.stdout
    user = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Config.User}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert user == "65532:65532"
