"""KEDA's external scaler protocol against the fake provider, through a real gRPC server
on loopback and a client generated from the same proto: the wire names, every method,
and each provider error answered with its own gRPC code (subclasses included)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import grpc
import pytest

from adapter.errors import BadRequest, NotFound, Unavailable
from adapter.keda import externalscaler_pb2 as pb
from adapter.keda import externalscaler_pb2_grpc as pb_grpc
from adapter.keda.scaler import ExternalScaler
from adapter.keda.server import ScalerServer
from adapter.provider.fake import FakeProvider
from adapter.service import build_service
from forecaster.config import Rule
from forecaster.sources.fake import FakeSource
from tests.conftest import RULE_QUERY

METRIC = "http_requests_forecast"


def ref(namespace: str = "default", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="checkout", namespace=namespace, scalerMetadata=metadata)


def checkout(**extra: str) -> pb.ScaledObjectRef:
    return ref(rule=METRIC, labelSelector="service=checkout", **extra)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(
        {
            METRIC: [
                ({"namespace": "default", "service": "checkout"}, 12.25),
                ({"namespace": "default", "service": "search"}, 3.5),
                ({"namespace": "staging", "service": "checkout"}, 99.0),
            ]
        },
        namespace_label="namespace",
    )


@pytest.fixture
def scaler(provider: FakeProvider) -> Iterator[pb_grpc.ExternalScalerStub]:
    server = ScalerServer(ExternalScaler(provider), "127.0.0.1", 0, None)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.start()}")
    yield pb_grpc.ExternalScalerStub(channel)
    channel.close()
    server.stop()


def test_the_wire_names_are_kedas():
    """KEDA's client calls /externalscaler.ExternalScaler/<Method> with these messages."""
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    assert methods == {
        "IsActive": ("ScaledObjectRef", "IsActiveResponse"),
        "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse"),
        "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse"),
        "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse"),
    }
    fields = {
        name: {f.name: f.number for f in message.fields}
        for name, message in pb.DESCRIPTOR.message_types_by_name.items()
    }
    assert fields["ScaledObjectRef"] == {"name": 1, "namespace": 2, "scalerMetadata": 3}
    assert fields["MetricSpec"] == {"metricName": 1, "targetSize": 2, "targetSizeFloat": 3}
    assert fields["MetricValue"] == {"metricName": 1, "metricValue": 2, "metricValueFloat": 3}
    assert fields["GetMetricsRequest"] == {"scaledObjectRef": 1, "metricName": 2}


def test_every_method_answers_what_the_provider_serves(scaler, provider):
    [spec] = scaler.GetMetricSpec(checkout(threshold="2.5")).metricSpecs
    assert (spec.metricName, spec.targetSizeFloat, spec.targetSize) == (METRIC, 2.5, 2)
    got = scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=checkout(), metricName=METRIC))
    [value] = got.metricValues
    assert (value.metricName, value.metricValueFloat, value.metricValue) == (METRIC, 12.25, 13)
    # The trigger's namespace and selector are the provider's question, as the API asks it.
    namespace, metric, selector = provider.asked[-1]
    assert (namespace, metric, str(selector)) == ("default", METRIC, "service=checkout")
    both = scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(rule=METRIC)))
    assert sorted(v.metricValueFloat for v in both.metricValues) == [3.5, 12.25]
    assert scaler.IsActive(checkout()).result is True  # activationThreshold 0 by default
    assert scaler.IsActive(checkout(activationThreshold="12")).result is True
    assert scaler.IsActive(checkout(activationThreshold="12.5")).result is False
    # KEDA's own keys, and <key>FromEnv (resolved by KEDA), are accepted.
    keda = checkout(scalerAddress="scaleahead:9443", enableTLS="true", thresholdFromEnv="3")
    assert scaler.GetMetricSpec(keda).metricSpecs[0].targetSizeFloat == 3.0


class Throttled(Unavailable):
    """A provider's own error class: it answers as the class it refines."""


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("gone"), grpc.StatusCode.NOT_FOUND),
        (Unavailable("prometheus down"), grpc.StatusCode.UNAVAILABLE),
        (Throttled("slow down"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_each_provider_error_has_its_own_code(scaler, provider, error, code):
    provider.failing[METRIC] = error

    def get_metrics(r: pb.ScaledObjectRef) -> object:
        return scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=r))

    for call in (scaler.IsActive, get_metrics):
        with pytest.raises(grpc.RpcError) as err:
            call(checkout())
        assert err.value.code() == code
        assert err.value.details() == error.message


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (ref(labelSelector="service=checkout"), "INVALID_ARGUMENT", "metadata rule is required"),
        (ref(rule="nope"), "NOT_FOUND", '"nope" is not served here'),
        (checkout(threshold="fast"), "INVALID_ARGUMENT", "threshold"),
        (checkout(colour="blue"), "INVALID_ARGUMENT", 'unknown metadata key "colour"'),
        (ref(namespace="Bad", rule=METRIC), "INVALID_ARGUMENT", "namespace"),
        (ref(rule=METRIC, labelSelector="a in (b"), "INVALID_ARGUMENT", "labelSelector"),
        (ref(rule=METRIC, labelSelector="service=none"), "NOT_FOUND", "matches"),
    ],
)
def test_bad_triggers_get_a_status_code_and_a_message(scaler, request_, code, needle):
    with pytest.raises(grpc.RpcError) as err:
        scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request_))
    assert err.value.code().name == code, err.value.details()
    assert needle in err.value.details()


@pytest.mark.parametrize("threshold", ["1e300", "1e16", "-1", "inf", "nan"])
def test_a_threshold_out_of_range_is_invalid_argument_not_internal(scaler, threshold):
    """1e300 became targetSize round(1e300), which no int64 holds: INTERNAL."""
    with pytest.raises(grpc.RpcError) as err:
        scaler.GetMetricSpec(checkout(threshold=threshold))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details() == (
        f"metadata threshold: {threshold} must be a finite number from 0 to 1e+15"
    )


def test_stream_is_active_pushes_each_change(provider):
    server = ScalerServer(ExternalScaler(provider, check_interval=0.02), "127.0.0.1", 0, None)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.start()}")
    stream = pb_grpc.ExternalScalerStub(channel).StreamIsActive(
        checkout(activationThreshold="20"), timeout=10
    )
    labels = {"namespace": "default", "service": "checkout"}
    try:
        answers = [next(stream).result]  # at once
        provider.set(METRIC, labels, 25.0)
        answers.append(next(stream).result)
        provider.failing[METRIC] = Unavailable("prometheus down")  # keeps its last answer
        time.sleep(0.2)
        del provider.failing[METRIC]
        provider.set(METRIC, labels, 5.0)
        answers.append(next(stream).result)
    finally:
        stream.cancel()
        channel.close()
        server.stop()
    assert answers == [False, True, False]


def test_no_values_is_unavailable_never_inactive():
    """The source down from the start, nothing is known: an error, not 'inactive' (which
    would let KEDA scale the workload to zero)."""
    rule = Rule(name=METRIC, query=RULE_QUERY)
    source = FakeSource()
    source.down = "cannot reach http://prometheus:9090: connection refused"
    svc = build_service([rule], lambda _: source, time.time)
    server = ScalerServer(ExternalScaler(svc.provider), "127.0.0.1", 0, None)
    stub = pb_grpc.ExternalScalerStub(grpc.insecure_channel(f"127.0.0.1:{server.start()}"))
    try:
        svc.current.refresh(rule)
        for call in (stub.IsActive, lambda r: list(stub.StreamIsActive(r, timeout=10))):
            with pytest.raises(grpc.RpcError) as err:
                call(checkout())
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "has no values yet" in err.value.details()
            assert "connection refused" in err.value.details()
    finally:
        server.stop()
        svc.stop()


def test_a_value_is_sent_as_its_float_and_its_ceiling(scaler, provider):
    provider.set(METRIC, {"namespace": "default", "service": "checkout"}, 0.001)
    got = scaler.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=checkout()))
    [value] = got.metricValues
    assert value.metricValueFloat == 0.001 and value.metricValue == math.ceil(0.001)
