"""The composition root and its parts' lifecycle; the adapter's own metrics and errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import grpc
import pytest
from prometheus_client import CollectorRegistry

from adapter.errors import BadRequest, NotFound, StatusError, Unavailable
from adapter.metrics import RequestMetrics, ServerMetrics, route
from adapter.server.gc import FreezeWhenReady
from adapter.service import DEMO_RULE, build_service
from forecaster.sources.fake import FakeSource


class Part:
    def __init__(self, name: str, log: list[str], fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_stop = name, log, fail_stop

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("stuck")


def test_parts_start_in_order_and_stop_in_reverse_even_when_one_fails(caplog):
    service = build_service([DEMO_RULE], lambda _: FakeSource(), time.time)
    log: list[str] = []
    service.parts += [Part("a", log), Part("b", log, fail_stop=True), Part("c", log)]
    service.start()
    try:
        assert service.jobs.scheduler.running  # the background jobs are the first part
        assert log == ["start a", "start b", "start c"]
    finally:
        service.stop()
    assert log[3:] == ["stop c", "stop b", "stop a"]
    assert not service.jobs.scheduler.running
    assert "stopping Part failed" in caplog.text


def test_every_error_answers_with_a_grpc_code_that_exists():
    for error in (StatusError, BadRequest, NotFound, Unavailable):
        assert grpc.StatusCode[error.grpc_code]  # KeyError if misspelt
    assert (BadRequest.code, NotFound.code, Unavailable.code, StatusError.code) == (
        400,
        404,
        503,
        500,
    )


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/apis/external.metrics.k8s.io/v1beta1/namespaces/x/anything", "external_metric"),
        ("/apis/external.metrics.k8s.io/v1beta1", "discovery"),
        ("/openapi/v3/whatever", "openapi"),
        ("/readyz", "readyz"),
        ("/made/up/path-123", "other"),
    ],
)
def test_routes_are_a_few_fixed_names(path: str, name: str):
    assert route(path) == name


def test_a_request_that_ends_without_a_response_is_counted_as_code_0():
    metrics = ServerMetrics(CollectorRegistry())

    async def dropped(scope, receive, send):  # type: ignore[no-untyped-def]
        raise ConnectionResetError

    async def call() -> None:
        scope = {"type": "http", "path": "/readyz"}
        await RequestMetrics(dropped, metrics)(scope, None, None)  # type: ignore[arg-type]

    with pytest.raises(ConnectionResetError):
        asyncio.run(call())
    assert metrics.api_requests.labels("readyz", "0")._value.get() == 1


def test_long_lived_objects_are_frozen_once_ready(caplog):
    caplog.set_level(logging.INFO, logger="scaleahead")
    ready = [False]
    freezer = FreezeWhenReady(lambda: ready[0])
    freezer.start()
    try:
        time.sleep(1.2)
        assert "once every rule had forecasts" not in caplog.text  # not before
        ready[0] = True
        deadline = time.monotonic() + 5
        while "once every rule had forecasts" not in caplog.text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert gc.get_freeze_count() > 0
    finally:
        freezer.stop()
        gc.unfreeze()
