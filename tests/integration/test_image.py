"""The Dockerfile lints clean and installs from the same pins as the README's commands.
The image itself is built from it with buildah and run as real pods by
tests/integration/cluster."""

from __future__ import annotations

import re
import subprocess

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
