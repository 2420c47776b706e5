"""A real one-node cluster (harness.node) with the project's image built from its
Dockerfile (harness.image) and imported, and a Prometheus on the node's bridge that the
pods read."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from forecaster.sources.trace import Trace
from harness.controlplane import MissingAssets
from harness.image import MissingTools, pause_image, project_image
from harness.node import Node, NodeUnavailable, prerequisites
from harness.prometheus import PrometheusServer
from tests.integration.conftest import backfilled_prometheus


@dataclass
class Cluster:
    node: Node
    image: str  # the project's image, as the overlay names it


def _unavailable(why: str) -> None:
    """Under CI=true what the project's files can install is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"no real node: {why}")
    pytest.skip(f"no real node: {why}")


@pytest.fixture(scope="package")
def cluster(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        prerequisites()
        pause, image = pause_image(), project_image()
        node = Node(tmp_path_factory.mktemp("node"), kubectl)
    except (NodeUnavailable, MissingTools, MissingAssets) as err:
        _unavailable(str(err))
    try:
        node.start(pause)
        node.import_image(*image)
        yield Cluster(node, image[0])
    finally:
        node.stop()
        # The unpacked images are large; the logs stay.
        for name in ("containerd", "containerd-state", "kubelet"):
            shutil.rmtree(node.root / name, ignore_errors=True)
    left = node.leftovers()
    assert not left, f"the node left these behind: {left}"


@pytest.fixture(scope="package")
def pod_prometheus(
    cluster: Cluster, nasa: Trace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """The nine days of NASA traffic of the session's Prometheus, on the node's bridge
    (pods cannot reach the host's loopback)."""
    server = backfilled_prometheus(
        nasa, tmp_path_factory.mktemp("pod-prometheus"), host=cluster.node.bridge.gateway
    )
    server.start()
    yield server
    server.stop()
