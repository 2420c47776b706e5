"""KEDA's external scaler protocol: a ScaledObject's `external` or `external-push` trigger
names a rule and a selector in its metadata and gets the same served values, from the same
provider, as the external metrics API answers."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import grpc

from adapter.errors import BadRequest, NotFound, StatusError
from adapter.keda import externalscaler_pb2 as pb
from adapter.keda import externalscaler_pb2_grpc as pb_grpc
from adapter.metrics import ServerMetrics
from adapter.names import check_namespace
from adapter.provider import ExternalMetricsProvider
from forecaster.selector import LabelSelector, SelectorError, parse_selector

log = logging.getLogger(__name__)

OURS = ("rule", "labelSelector", "threshold", "activationThreshold")
"""The trigger metadata scaleahead reads (each may also be given as <key>FromEnv)."""

KEDAS = ("scalerAddress", "enableTLS", "unsafeSsl")
"""Trigger metadata KEDA reads itself and passes along; ignored here."""

STREAM_CHECK_INTERVAL = 5.0
"""How often (seconds) an open StreamIsActive re-evaluates its trigger."""


@dataclass(frozen=True)
class Trigger:
    """What one ScaledObject trigger asks for, checked."""

    namespace: str
    rule: str
    selector: LabelSelector
    threshold: float | None
    activation: float


MAX_NUMBER = 1e15
"""The largest threshold taken: KEDA's targetSize is an int64, and floats hold every
integer exactly only up to 2**53 (about 9e15)."""


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f'metadata {key}: "{text}" is not a number') from None
    if not math.isfinite(value) or not 0 <= value <= MAX_NUMBER:
        raise BadRequest(
            f"metadata {key}: {text} must be a finite number from 0 to {MAX_NUMBER:.0e}"
        )
    return value


def parse_trigger(ref: pb.ScaledObjectRef, rules: list[str]) -> Trigger:
    """The trigger a ScaledObjectRef describes, or BadRequest / NotFound naming the key."""
    check_namespace(ref.namespace)
    meta: dict[str, str] = {}
    for key, value in ref.scalerMetadata.items():
        name = key.removesuffix("FromEnv")
        if name in OURS:
            meta[name] = value
        elif key not in KEDAS:
            raise BadRequest(
                f'unknown metadata key "{key}" in the trigger of ScaledObject '
                f"{ref.namespace}/{ref.name}: scaleahead reads {', '.join(OURS)}"
            )
    rule = meta.get("rule", "")
    if not rule:
        raise BadRequest(
            "metadata rule is required: the name of the scaleahead rule to scale on "
            f"(served: {', '.join(sorted(rules))})"
        )
    if rule not in rules:
        raise NotFound(
            f'metadata rule: "{rule}" is not served here; served: {", ".join(sorted(rules))}'
        )
    try:
        selector = parse_selector(meta.get("labelSelector"))
    except SelectorError as err:
        raise BadRequest(f"metadata labelSelector: {err}") from None
    threshold = _number("threshold", meta["threshold"]) if "threshold" in meta else None
    if threshold == 0:
        raise BadRequest("metadata threshold: the value per replica must be above 0")
    activation = _number("activationThreshold", meta.get("activationThreshold", "0"))
    return Trigger(ref.namespace, rule, selector, threshold, activation)


T = TypeVar("T")


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    """The servicer: each call parses its trigger and asks the provider, which answers
    from memory, so the calls run on the server's event loop."""

    def __init__(
        self,
        provider: ExternalMetricsProvider,
        metrics: ServerMetrics | None = None,
        check_interval: float = STREAM_CHECK_INTERVAL,
    ) -> None:
        self.provider = provider
        self.metrics = metrics
        self.check_interval = check_interval

    def _trigger(self, ref: pb.ScaledObjectRef) -> Trigger:
        return parse_trigger(ref, self.provider.metric_names())

    def _values(self, trigger: Trigger) -> list[float]:
        values = self.provider.values(trigger.namespace, trigger.rule, trigger.selector)
        return [v.value for v in values]

    def _active(self, trigger: Trigger) -> bool:
        return sum(self._values(trigger)) > trigger.activation

    async def _answer(
        self, method: str, context: grpc.aio.ServicerContext, answer: Callable[[], T]
    ) -> T:
        try:
            result = answer()
        except StatusError as err:
            await self._abort(method, context, err)
        except Exception as err:  # a bug: INTERNAL with its message, never a number
            log.error("KEDA %s failed", method, exc_info=err)
            await self._abort(method, context, StatusError(f"internal error: {err}"))
        self._count(method, grpc.StatusCode.OK)
        return result

    async def _abort(
        self, method: str, context: grpc.aio.ServicerContext, err: StatusError
    ) -> NoReturn:
        code = grpc.StatusCode[err.grpc_code]
        self._count(method, code)
        await context.abort(code, err.message)
        raise AssertionError("unreachable: abort raises")

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        if self.metrics is not None:
            self.metrics.keda_requests.labels(method, code.name).inc()

    async def IsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.IsActiveResponse:
        def answer() -> pb.IsActiveResponse:
            return pb.IsActiveResponse(result=self._active(self._trigger(request)))

        return await self._answer("IsActive", context, answer)

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        def answer() -> pb.GetMetricSpecResponse:
            trigger = self._trigger(request)
            if trigger.threshold is None:
                raise BadRequest(
                    "metadata threshold is required: the value of the metric one replica "
                    "handles (the HPA's target per replica)"
                )
            spec = pb.MetricSpec(
                metricName=trigger.rule,
                targetSize=max(1, round(trigger.threshold)),
                targetSizeFloat=trigger.threshold,
            )
            return pb.GetMetricSpecResponse(metricSpecs=[spec])

        return await self._answer("GetMetricSpec", context, answer)

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        def answer() -> pb.GetMetricsResponse:
            trigger = self._trigger(request.scaledObjectRef)
            name = request.metricName or trigger.rule
            if name != trigger.rule:
                raise NotFound(
                    f'metric "{name}" is not the metric of this trigger, "{trigger.rule}" '
                    "(the name GetMetricSpec gave)"
                )
            return pb.GetMetricsResponse(
                metricValues=[
                    pb.MetricValue(metricName=name, metricValue=math.ceil(v), metricValueFloat=v)
                    for v in self._values(trigger)
                ]
            )

        return await self._answer("GetMetrics", context, answer)

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        """The current answer at once, then each change. A trigger that cannot be answered
        at first ends the stream with its error; one that fails later keeps its last
        answer (an outage is not a reason to scale to zero) until it can be answered."""

        def first() -> tuple[Trigger, bool]:
            trigger = self._trigger(request)
            return trigger, self._active(trigger)

        trigger, last = await self._answer("StreamIsActive", context, first)
        if self.metrics is not None:
            self.metrics.keda_streams.inc()
        failing = False
        try:
            yield pb.IsActiveResponse(result=last)
            while True:
                await asyncio.sleep(self.check_interval)
                try:
                    active = self._active(trigger)
                except StatusError as err:
                    if not failing:
                        log.warning(
                            "StreamIsActive %s/%s: %s; keeping the last answer (%s)",
                            request.namespace,
                            request.name,
                            err.message,
                            last,
                        )
                    failing = True
                    continue
                failing = False
                if active != last:
                    last = active
                    yield pb.IsActiveResponse(result=active)
        finally:
            if self.metrics is not None:
                self.metrics.keda_streams.dec()
