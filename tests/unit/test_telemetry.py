"""Telemetry: nothing at all when unconfigured; spans and metrics per outgoing request when on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import weakref
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ct_insider import telemetry
from ct_insider.config import ConfigurationError, TelemetrySettings

# Run in a fresh interpreter: the process-wide providers can be set only once, and whether
# they were is exactly what is asserted.
PROBE = """
import json
from opentelemetry import metrics, trace
from pydantic import SecretStr
from bridge.app import create_app
from bridge.observability import RequestTelemetry
from ct_insider import telemetry
from ct_insider.config import TemporalSettings
from ct_insider.temporal import tracing_interceptors
from ct_insider.transport import api_http_client

on = telemetry.configure_telemetry("probe", serve_metrics=False)
http = api_http_client(__import__("httpx").Timeout(1.0), system="insider")
app = create_app(SecretStr("t"), None, None, None)
print(json.dumps({
    "configured": on,
    "tracer": telemetry.tracer() is not None,
    "tracer_provider": type(trace.get_tracer_provider()).__name__,
    "meter_provider": type(metrics.get_meter_provider()).__name__,
    "interceptors": [type(i).__name__ for i in tracing_interceptors(TemporalSettings())],
    "transport": type(http._transport).__name__,
    "bridge_middleware": [m.cls.__name__ for m in app.user_middleware],
}))
"""


def _probe(**env: str) -> dict[str, object]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CT_INSIDER_METRICS"))
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    probed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return probed


def test_with_telemetry_unset_nothing_is_created() -> None:
    # Given no OTEL_* variable and no metrics address; When a process configures telemetry
    probed = _probe()
    # Then the global providers stay the API's no-op proxies, no tracing interceptor is
    # given to Temporal, the HTTP clients keep their bare transport, the bridge no middleware
    assert probed == {
        "configured": False,
        "tracer": False,
        "tracer_provider": "ProxyTracerProvider",
        "meter_provider": "_ProxyMeterProvider",
        "interceptors": [],
        "transport": "LeanTransport",
        "bridge_middleware": ["BearerTokenMiddleware"],
    }


def test_with_an_exporter_configured_every_layer_traces() -> None:
    # Given a traces exporter named (the console: no collector needed for the test)
    probed = _probe(OTEL_TRACES_EXPORTER="console")
    # Then the same probe finds a tracer provider, the interceptor and the instrumented layers
    assert probed["configured"] is True
    assert probed["tracer_provider"] == "TracerProvider"
    assert probed["interceptors"] == ["TracingInterceptor"]
    assert probed["transport"] == "InstrumentedTransport"
    assert probed["bridge_middleware"] == ["RequestTelemetry", "BearerTokenMiddleware"]


def test_unsupported_exporter_settings_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        telemetry.configure_telemetry(
            "x",
            settings=TelemetrySettings.model_validate({"OTEL_TRACES_EXPORTER": "zipkin"}),
            set_global=False,
        )
    assert "OTEL_TRACES_EXPORTER='zipkin'" in raised.value.message
    with pytest.raises(ConfigurationError) as raised:
        telemetry.configure_telemetry(
            "x",
            settings=TelemetrySettings.model_validate(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "h3",
                }
            ),
            set_global=False,
        )
    assert "http/protobuf or grpc" in raised.value.message
    assert telemetry.tracer() is None


@pytest.mark.parametrize(
    ("system", "path", "template"),
    [
        ("commercetools", "/test-project/customers/5b9e-1234-5678", "/{project}/customers/{id}"),
        ("commercetools", "/p/customers/key=jane@example.com", "/{project}/customers/key={key}"),
        (
            "commercetools",
            "/p/custom-objects/ledger/order-17",
            "/{project}/custom-objects/{id}/{id}",
        ),
        ("commercetools", "/oauth/token", "/oauth/token"),
        ("insider", "/api/user/v1/upsert", "/api/user/v1/upsert"),
        ("insider", "/api/user/v1/profile/+15035551234", "/api/user/v1/profile/{id}"),
    ],
)
def test_route_templates_hold_no_identifier(system: str, path: str, template: str) -> None:
    assert telemetry.route_template(system, path) == template


@pytest.fixture(scope="module")
def metric_reader() -> InMemoryMetricReader:
    """The process's meter provider, read in memory (it can be set once per process)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert telemetry.configure_telemetry(
        "test",
        settings=TelemetrySettings.model_validate({}),
        serve_metrics=False,
        span_exporter=exporter,
        set_global=False,
    )
    yield exporter
    telemetry.shutdown_telemetry()


def _points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, str], float]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: list[tuple[dict[str, str], float]] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        # a counter's value, a histogram's number of samples
                        value = getattr(point, "value", None)
                        number = value if value is not None else getattr(point, "count", 0)
                        labels = {k: str(v) for k, v in (point.attributes or {}).items()}
                        found.append((labels, float(number)))
    return found


async def test_each_outgoing_request_gets_a_client_span_and_its_metrics(
    metric_reader: InMemoryMetricReader, spans: InMemorySpanExporter
) -> None:
    # Given Insider answering 429, then 503, then 200
    answers = iter([429, 503, 200])
    transport = telemetry.instrumented(
        httpx.MockTransport(lambda _request: httpx.Response(next(answers))), "insider"
    )
    async with httpx.AsyncClient(transport=transport) as http:
        # When three upserts go out, naming a person in the query string
        for _ in range(3):
            await http.post("http://insider.test/api/user/v1/upsert?email=jane@example.com")

    # Then each is one CLIENT span named by method, system and route, with its status
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["POST insider /api/user/v1/upsert"] * 3
    assert [s.attributes["http.response.status_code"] for s in finished if s.attributes] == [
        429,
        503,
        200,
    ]
    assert all("jane" not in str(s.attributes) for s in finished)
    # And the latency histogram, the 429 and the 5xx counters have them by route
    route = {"system": "insider", "route": "/api/user/v1/upsert"}
    latency = _points(metric_reader, "ct_insider_http_request_duration")
    assert sorted(
        (labels["status"], count) for labels, count in latency if labels["system"] == "insider"
    ) == [
        ("200", 1),
        ("429", 1),
        ("503", 1),
    ]
    assert (route, 1) in _points(metric_reader, "ct_insider_http_throttled")
    assert (route, 1) in _points(metric_reader, "ct_insider_http_server_errors")


def test_record_counts_are_labelled_by_entity_and_path(metric_reader: InMemoryMetricReader) -> None:
    telemetry.count_records("backfill", "customers", sent=3, rejected=1)
    telemetry.count_records("realtime", "order", dead_lettered=2)
    assert ({"entity": "customers", "path": "backfill"}, 3) in _points(
        metric_reader, "ct_insider_records_sent"
    )
    assert ({"entity": "customers", "path": "backfill"}, 1) in _points(
        metric_reader, "ct_insider_records_rejected"
    )
    assert ({"entity": "order", "path": "realtime"}, 2) in _points(
        metric_reader, "ct_insider_records_dead_lettered"
    )


async def test_timer_starts_refused_at_the_cap_are_counted_and_open_timers_gauged(
    metric_reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ct_insider.timers.cap import OpenTimerCap

    # (the gauge takes the highest count of every live cap: only this test's cap here; the
    # counter is the process's, shared with the tests before: its increase is measured)
    monkeypatch.setattr(telemetry, "_timer_workflow_sources", weakref.WeakSet())

    def refused(kind: str) -> float:
        points = _points(metric_reader, "ct_insider_timer_starts_refused")
        return sum(value for labels, value in points if labels == {"kind": kind})

    async def three_open(_query: str) -> int:
        return 3

    before = refused("replenishment")
    # Given replenishment timers at their cap of 3
    cap = OpenTimerCap(three_open, {"cart": 10, "replenishment": 3})
    # When two more ask to start, and a cart timer
    assert not await cap.admits_new("replenishment")
    assert not await cap.admits_new("replenishment")
    assert await cap.admits_new("cart")
    # Then two refusals are counted for that kind, and the gauge shows each kind's count
    assert refused("replenishment") - before == 2
    gauge = _points(metric_reader, "ct_insider_timer_workflows_open")
    assert ({"kind": "replenishment"}, 3) in gauge
    assert ({"kind": "cart"}, 4) in gauge


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        (":9464", ("0.0.0.0", 9464)),
        ("[::]:9465", ("::", 9465)),
        ("[::1]:9465", ("::1", 9465)),
    ],
)
def test_metrics_bind_addresses_parse_ipv4_names_and_bracketed_ipv6(
    address: str, expected: tuple[str, int]
) -> None:
    assert telemetry.bind_address(address) == expected


@pytest.mark.parametrize("address", ["9464", "::1:9464", "[::1]", "host:port", "h:70000"])
def test_a_bad_metrics_bind_address_is_a_configuration_error(address: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        telemetry.bind_address(address)
    assert "CT_INSIDER_METRICS_BIND_ADDRESS" in raised.value.message


SCRAPE = """
import httpx, sys
from ct_insider import telemetry
telemetry.configure_telemetry("probe")
telemetry.count_records("backfill", "customers", sent=1)
port = sys.argv[1]
print(httpx.get(f"http://[::1]:{port}/metrics", timeout=10).text)
telemetry.shutdown_telemetry()
"""


def test_the_metrics_endpoint_binds_an_ipv6_address() -> None:
    # Given a free port on the IPv6 loopback
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CT_INSIDER_METRICS"))
    }
    # When a process serves its metrics on [::1]:port
    result = subprocess.run(
        [sys.executable, "-c", SCRAPE, str(port)],
        env={**clean, "CT_INSIDER_METRICS_BIND_ADDRESS": f"[::1]:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then Prometheus can scrape them there
    assert result.returncode == 0, result.stderr
    assert "ct_insider_records_sent" in result.stdout
