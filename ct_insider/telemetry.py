"""OpenTelemetry traces and the connector's own metrics, set up once per process.

`configure_telemetry(service_name)` is called by the worker, the bridge and the CLI. With
nothing configured it creates nothing: `tracer()` stays None, so no span is started and no
context is injected anywhere (bench/realtime.py measures CPU per event with tracing off),
and the instruments below stay the API's no-op proxies.

- traces: when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set or
  OTEL_TRACES_EXPORTER names an exporter: a TracerProvider with a BatchSpanProcessor and an
  OTLP exporter (http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL says grpc) or the console.
- metrics: CT_INSIDER_METRICS_BIND_ADDRESS serves a Prometheus endpoint; an OTLP endpoint (or
  OTEL_METRICS_EXPORTER=otlp) pushes them every OTEL_METRIC_EXPORT_INTERVAL ms.

The instruments are module-level, made from the global meter: they bind to the provider
once one is set, so code records without knowing whether anything listens.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from ct_insider.config import ConfigurationError, TelemetrySettings

INSTRUMENTATION_NAME = "ct_insider"

# -- the connector's metrics (names, types and labels are listed in docs/operations.md, Observability) -------------

_meter = metrics.get_meter(INSTRUMENTATION_NAME)
RECORDS_SENT = _meter.create_counter(
    "ct_insider_records_sent", unit="1", description="records Insider acknowledged"
)
RECORDS_REJECTED = _meter.create_counter(
    "ct_insider_records_rejected", unit="1", description="records not sent (refused or unmappable)"
)
RECORDS_DEAD_LETTERED = _meter.create_counter(
    "ct_insider_records_dead_lettered", unit="1", description="dead letters written"
)
REQUEST_DURATION = _meter.create_histogram(
    "ct_insider_http_request_duration",
    unit="s",
    description="outgoing requests to commercetools and Insider, by route template and status",
    explicit_bucket_boundaries_advisory=[
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
    ],
)
THROTTLED = _meter.create_counter(
    "ct_insider_http_throttled", unit="1", description="429 answers from commercetools or Insider"
)
SERVER_ERRORS = _meter.create_counter(
    "ct_insider_http_server_errors",
    unit="1",
    description="5xx answers from commercetools or Insider",
)
BRIDGE_REQUESTS = _meter.create_counter(
    "ct_insider_bridge_requests", unit="1", description="bridge requests by route and outcome"
)


@dataclass
class _State:
    tracer: trace.Tracer | None = None
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    metrics_on: bool = False
    stops: list[Callable[[], None]] = field(default_factory=list)


_state = _State()


def tracer() -> trace.Tracer | None:
    """The connector's tracer, or None when tracing is off (then make no span at all)."""
    return _state.tracer


def active() -> bool:
    """Whether traces or metrics go anywhere (HTTP clients instrument themselves only then)."""
    return _state.tracer is not None or _state.metrics_on


def _version() -> str:
    try:
        return importlib.metadata.version("ct-insider")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _resource(service_name: str, settings: TelemetrySettings) -> Resource:
    attributes = {"service.version": _version()}
    if not settings.otel_service_name:  # OTEL_SERVICE_NAME, when set, names the service
        attributes["service.name"] = service_name
    return Resource.create(attributes)


def _span_exporter(settings: TelemetrySettings) -> SpanExporter | None:
    exporter = (settings.otel_traces_exporter or "").strip().lower()
    endpoint = settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint
    if exporter == "none" or (not exporter and not endpoint):
        return None
    if exporter == "console":
        return ConsoleSpanExporter()
    if exporter not in ("", "otlp"):
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not supported (otlp, console or none)"
        )
    if _protocol(settings, settings.otel_exporter_otlp_traces_protocol) == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            raise ConfigurationError(_GRPC_MISSING) from exc
        return GrpcSpanExporter()  # type: ignore[no-any-return,unused-ignore]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # reads the endpoint, headers and timeout from OTEL_*


_GRPC_MISSING = (
    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs `pip install opentelemetry-exporter-otlp-proto-grpc`"
    " (or use http/protobuf)"
)


def _protocol(settings: TelemetrySettings, specific: str | None) -> str:
    protocol = (specific or settings.otel_exporter_otlp_protocol or "http/protobuf").strip()
    if protocol not in ("http/protobuf", "grpc"):
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (http/protobuf or grpc)"
        )
    return protocol


# `host:port` (IPv4 or a name; an empty host is every IPv4 interface) or `[ipv6]:port`.
_BIND_ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})")


def bind_address(address: str) -> tuple[str, int]:
    """The host and port of `host:port`, `[ipv6]:port` (`[::]:9465`) or `:port`, or a
    ConfigurationError naming CT_INSIDER_METRICS_BIND_ADDRESS."""
    match = _BIND_ADDRESS.fullmatch(address.strip())
    if match is None or int(match["port"]) > 65535:
        raise ConfigurationError(
            f"CT_INSIDER_METRICS_BIND_ADDRESS={address!r} is not host:port "
            "(e.g. 0.0.0.0:9464, or [::]:9464 for IPv6)"
        )
    return match["v6"] or match["host"] or "0.0.0.0", int(match["port"])


def _metric_readers(settings: TelemetrySettings, serve_metrics: bool) -> list[MetricReader]:
    readers: list[MetricReader] = []
    if serve_metrics and settings.metrics_bind_address:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        host, port = bind_address(settings.metrics_bind_address)
        server, thread = start_http_server(port, addr=host)
        _state.stops.append(server.shutdown)
        _state.stops.append(lambda: thread.join(timeout=5))
        readers.append(PrometheusMetricReader())
    exporter = (settings.otel_metrics_exporter or "").strip().lower()
    endpoint = settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_metrics_endpoint
    if exporter == "otlp" or (not exporter and endpoint):
        if _protocol(settings, settings.otel_exporter_otlp_metrics_protocol) == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPMetricExporter as GrpcMetricExporter,
                )
            except ImportError as exc:
                raise ConfigurationError(_GRPC_MISSING) from exc
            readers.append(PeriodicExportingMetricReader(GrpcMetricExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    return readers


def configure_telemetry(
    service_name: str,
    *,
    settings: TelemetrySettings | None = None,
    serve_metrics: bool = True,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = True,
) -> bool:
    """Set up what the environment asks for; return whether anything was set up.

    `span_exporter` and `metric_readers` add to the configured ones (tests pass in-memory
    ones, exported synchronously); `set_global=False` keeps the API's global providers
    untouched (the process-wide providers can be set only once). `serve_metrics=False`
    (short CLI commands) opens no Prometheus endpoint.
    """
    settings = settings or TelemetrySettings()
    exporter = _span_exporter(settings)
    readers = [*_metric_readers(settings, serve_metrics), *metric_readers]
    resource = _resource(service_name, settings)
    if exporter is not None or span_exporter is not None:
        provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        if span_exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        if set_global:
            trace.set_tracer_provider(provider)
        _state.tracer_provider = provider
        _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME, _version())
    if readers:
        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        if set_global:
            metrics.set_meter_provider(meter_provider)
        _state.meter_provider = meter_provider
        _state.metrics_on = True
    return active()


def shutdown_telemetry() -> None:
    """Flush spans and metrics still buffered; stop the Prometheus endpoint."""
    if _state.tracer_provider is not None:
        _state.tracer_provider.shutdown()
    if _state.meter_provider is not None:
        _state.meter_provider.shutdown()
    for stop in _state.stops:
        stop()
    _state.stops.clear()
    _state.tracer = None
    _state.tracer_provider = None
    _state.meter_provider = None
    _state.metrics_on = False


# -- outgoing HTTP: one span and one latency sample per request ------------------------------

_WORD = re.compile(r"^[a-z][a-z_-]*[a-z0-9]?$")


def route_template(system: str, path: str) -> str:
    """The path with everything that may identify a record or a person replaced.

    commercetools: `/{project}/{resource}` is kept and every later segment becomes `{id}`
    (`key=...` becomes `key={key}`); Insider's routes are fixed words (identifiers travel in
    bodies), so lowercase words are kept there and anything else becomes `{id}`.
    """
    segments = [s for s in path.split("/") if s]
    if system == "commercetools" and segments and segments[0] != "oauth":
        kept = segments[:2]
        rest = ["key={key}" if s.startswith("key=") else "{id}" for s in segments[2:]]
        return "/" + "/".join(["{project}", *kept[1:], *rest]) if kept else "/"
    return "/" + "/".join(s if _WORD.match(s) and len(s) <= 40 else "{id}" for s in segments)


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: a CLIENT span (when tracing) and the latency/429/5xx metrics."""

    def __init__(self, inner: httpx.AsyncBaseTransport, system: str) -> None:
        self._inner = inner
        self._system = system

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = route_template(self._system, request.url.path)
        started = time.perf_counter()
        with _client_span(self._system, request, route) as span:
            try:
                response = await self._inner.handle_async_request(request)
            except Exception:
                labels = {"system": self._system, "route": route, "status": "error"}
                REQUEST_DURATION.record(time.perf_counter() - started, labels)
                if span is not None:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, "transport error"))
                raise
            code = response.status_code
            if span is not None:
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
        labels = {"system": self._system, "route": route, "status": str(code)}
        REQUEST_DURATION.record(time.perf_counter() - started, labels)
        if code == 429:
            THROTTLED.add(1, {"system": self._system, "route": route})
        elif code >= 500:
            SERVER_ERRORS.add(1, {"system": self._system, "route": route})
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.contextmanager
def _client_span(system: str, request: httpx.Request, route: str) -> Iterator[trace.Span | None]:
    current = _state.tracer
    if current is None:
        yield None
        return
    with current.start_as_current_span(
        f"{request.method} {system} {route}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.template": route,
            "peer.service": system,
        },
        record_exception=False,  # exception messages can carry URLs with identifiers
    ) as span:
        yield span


def instrumented(transport: httpx.AsyncBaseTransport, system: str) -> httpx.AsyncBaseTransport:
    """The transport as it is when telemetry is off; wrapped when traces or metrics go out."""
    return InstrumentedTransport(transport, system) if active() else transport


# -- records and observed values -------------------------------------------------------------


def count_records(
    path: str, entity: str, *, sent: int = 0, rejected: int = 0, dead_lettered: int = 0
) -> None:
    labels = {"entity": entity, "path": path}
    if sent:
        RECORDS_SENT.add(sent, labels)
    if rejected:
        RECORDS_REJECTED.add(rejected, labels)
    if dead_lettered:
        RECORDS_DEAD_LETTERED.add(dead_lettered, labels)


class TimerSource(Protocol):
    def open_timers(self) -> Mapping[str, int]:
        """Timers waiting to fire now, by kind."""
        ...


# Held weakly: a bridge committer or an upsert coalescer leaves the gauge when it goes.
_timer_sources: weakref.WeakSet[TimerSource] = weakref.WeakSet()


def track_open_timers(source: TimerSource) -> None:
    _timer_sources.add(source)


def _observe_open_timers(_options: CallbackOptions) -> Iterable[Observation]:
    totals: Counter[str] = Counter()
    for source in list(_timer_sources):
        totals.update(source.open_timers())
    return [Observation(count, {"kind": kind}) for kind, count in sorted(totals.items())]


# Read only when a reader collects (a scrape, an export interval).
OPEN_TIMERS = _meter.create_observable_gauge(
    "ct_insider_open_timers",
    callbacks=[_observe_open_timers],
    unit="1",
    description="in-process timers waiting to fire: bridge commit windows, upsert lingers",
)


# -- journey shards' backlog, as the bridge sees it (bridge/commit.py) -----------------------


class JourneyBacklogSource(Protocol):
    def journey_backlog(self) -> Mapping[int, float]:
        """Per journey shard: its history size as last described, as a fraction of the size
        at which the bridge refuses the shard's events (BRIDGE_SHARD_BACKLOG_BYTES)."""
        ...


_journey_backlog_sources: weakref.WeakSet[JourneyBacklogSource] = weakref.WeakSet()


def track_journey_backlog(source: JourneyBacklogSource) -> None:
    _journey_backlog_sources.add(source)


def _observe_journey_backlog(_options: CallbackOptions) -> Iterable[Observation]:
    seen: dict[int, float] = {}
    for source in list(_journey_backlog_sources):
        for shard, fraction in source.journey_backlog().items():
            seen[shard] = max(seen.get(shard, 0.0), fraction)
    return [
        Observation(fraction, {"shard": str(shard)}) for shard, fraction in sorted(seen.items())
    ]


# A shard over 1 is refused (503) until it catches up; a lasting value near it means the
# workers or Insider cannot keep up with that shard (deploy/prometheus/alerts.yml).
JOURNEY_BACKLOG = _meter.create_observable_gauge(
    "ct_insider_journey_shard_backlog",
    callbacks=[_observe_journey_backlog],
    unit="1",
    description="a journey shard's history as a fraction of BRIDGE_SHARD_BACKLOG_BYTES, as the "
    "bridge last described it (1: its events are refused until it catches up)",
)


# -- timer workflows (cart recovery, replenishment: ct_insider/timers/) ------------------------

TIMER_STARTS_REFUSED = _meter.create_counter(
    "ct_insider_timer_starts_refused",
    unit="1",
    description="timer workflows not started because their kind was at its cap",
)


class TimerWorkflowSource(Protocol):
    def open_timer_workflows(self) -> Mapping[str, int]:
        """Open timer workflows by kind, as last counted."""
        ...


_timer_workflow_sources: weakref.WeakSet[TimerWorkflowSource] = weakref.WeakSet()


def track_timer_workflows(source: TimerWorkflowSource) -> None:
    _timer_workflow_sources.add(source)


def _observe_timer_workflows(_options: CallbackOptions) -> Iterable[Observation]:
    seen: dict[str, int] = {}
    for source in list(_timer_workflow_sources):
        for kind, count in source.open_timer_workflows().items():
            seen[kind] = max(seen.get(kind, 0), count)  # every cap counts the same namespace
    return [Observation(count, {"kind": kind}) for kind, count in sorted(seen.items())]


TIMER_WORKFLOWS_OPEN = _meter.create_observable_gauge(
    "ct_insider_timer_workflows_open",
    callbacks=[_observe_timer_workflows],
    unit="1",
    description="open timer workflows by kind, as the cap last counted them",
)
