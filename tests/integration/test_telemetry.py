"""Traces and metrics of the real bridge and worker.

- tracing: the bridge and a worker in this process, spans exported in memory; one
  storefront event and one commercetools message, followed from the bridge request to
  the HTTP calls to Insider and commercetools
- metrics: a `ct-insider worker` process with both Prometheus endpoints, scraped after a
  small backfill
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from ct_insider import telemetry
from ct_insider.config import TelemetrySettings, TemporalSettings
from ct_insider.temporal import tracing_interceptors
from emulators.process import free_port
from starters.backfill import start_backfill
from tests.bridge_helpers import message, seconds_ago, serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker, worker_process
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration


class Spans:
    def __init__(self, finished: Sequence[ReadableSpan]) -> None:
        self.all = list(finished)
        self._by_id = {s.context.span_id: s for s in self.all if s.context}

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name.startswith(prefix)]

    def one(self, name: str) -> ReadableSpan:
        [span] = [s for s in self.all if s.name == name]
        return span

    def ancestors(self, span: ReadableSpan) -> list[str]:
        """Names of the span's parents, nearest first (as far as they were exported)."""
        names = []
        parent = span.parent
        while parent is not None and parent.span_id in self._by_id:
            above = self._by_id[parent.span_id]
            names.append(above.name)
            parent = above.parent
        return names


async def test_one_trace_runs_from_the_bridge_request_to_the_calls_to_insider_and_commercetools(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given tracing on (spans kept in memory), and the bridge and a worker in this process on
    # a Temporal client with the tracing interceptor; one shard, so the second request's
    # signal goes to the shard the first one started
    emu = clean_emulators
    exporter = InMemorySpanExporter()
    assert telemetry.configure_telemetry(
        "ct-insider-test",
        settings=TelemetrySettings.model_validate({}),
        serve_metrics=False,
        span_exporter=exporter,
        set_global=False,
    )
    try:
        config = client.config()
        config["interceptors"] = tracing_interceptors(TemporalSettings())
        traced = Client(**config)
        customer_id, email, sku = emu.shopper()
        order = emu.place_order(sku, customerId=customer_id, customerEmail=email)
        async with (
            running_worker(traced, task_queue, emu) as workers,
            serving_bridge(traced, workers.journey_task_queue, emu, shards=1) as bridge,
        ):
            # When one storefront event arrives, then one commercetools message (without the
            # order: the bridge reads it from commercetools)
            view = storefront_event(
                "product_view", {"customer_id": customer_id}, seconds_ago(30), sku=sku
            )
            assert (await bridge.post("/events", view)).status_code == 202
            created = message("order", order["id"], "OrderCreated", at=seconds_ago(20))
            assert (await bridge.post("/webhooks/commercetools", created)).status_code == 202
            await eventually(lambda: emu.insider_events("purchase"), within=30)
            await eventually(lambda: emu.insider_events("product_detail_page_view"), within=30)
            await eventually(
                lambda: Spans(exporter.get_finished_spans()).named(
                    "POST insider /api/user/v1/upsert"
                )
            )
    finally:
        telemetry.shutdown_telemetry()
    spans = Spans(exporter.get_finished_spans())

    # Then the event's trace runs bridge request -> commit window -> signal -> workflow ->
    # activity -> the HTTP call to Insider, parent by parent
    event_request = spans.one("POST /events")
    trace_id = event_request.context.trace_id if event_request.context else 0
    first_trace = [s for s in spans.all if s.context and s.context.trace_id == trace_id]
    names = {s.name for s in first_trace}
    assert {
        "bridge.commit_window",
        "SignalWithStartWorkflow:JourneyShardWorkflow",
        "RunWorkflow:JourneyShardWorkflow",
        "HandleSignal:deliver",
        "StartActivity:deliver_journeys",
        "RunActivity:deliver_journeys",
    } <= names
    [upsert, *_] = [s for s in first_trace if s.name == "POST insider /api/user/v1/upsert"]
    assert spans.ancestors(upsert)[:3] == [
        "RunActivity:deliver_journeys",
        "StartActivity:deliver_journeys",
        "SignalWithStartWorkflow:JourneyShardWorkflow",
    ]
    assert spans.ancestors(upsert)[-2:] == ["bridge.commit_window", "POST /events"]
    assert upsert.attributes
    assert upsert.attributes["http.response.status_code"] == 200

    # And the message's request has its call to commercetools as a child, its signal a
    # span of its own, and the shard's handling of that signal links to it
    message_request = spans.one("POST /webhooks/commercetools")
    [read_order] = spans.named("GET commercetools /{project}/orders/{id}")
    assert spans.ancestors(read_order) == ["POST /webhooks/commercetools"]
    message_trace = message_request.context.trace_id if message_request.context else 0
    [signalled] = [
        s
        for s in spans.named("SignalWithStartWorkflow:")
        if s.context and s.context.trace_id == message_trace
    ]
    assert spans.ancestors(signalled) == ["bridge.commit_window", "POST /webhooks/commercetools"]
    handled = [
        s
        for s in spans.named("HandleSignal:deliver")
        if any(link.context.span_id == signalled.context.span_id for link in s.links)
    ]
    assert handled, "no HandleSignal span links to the message's signal"
    assert handled[0].context
    assert handled[0].context.trace_id == trace_id

    # And no span name holds an identifier or personal data
    for span in spans.all:
        assert customer_id not in span.name
        assert order["id"] not in span.name
        assert email not in span.name


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


async def test_metrics_appear_on_the_prometheus_endpoints_after_a_small_backfill(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    # Given a worker process serving the connector's metrics and the Temporal SDK's
    emu = clean_emulators
    customers = emu.seeder().customers(3)
    ours, sdk = free_port(), free_port()
    env = {
        "CT_INSIDER_METRICS_BIND_ADDRESS": f"127.0.0.1:{ours}",
        "TEMPORAL_METRICS_BIND_ADDRESS": f"127.0.0.1:{sdk}",
    }
    with worker_process(emu, client, task_queue, tmp_path, "worker", **env):
        # When a backfill of the customers runs to its end
        handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
        result = await handle.result()
        assert result.status == "completed"
        async with httpx.AsyncClient(timeout=10) as http:
            connector = (await http.get(f"http://127.0.0.1:{ours}/metrics")).text
            temporal_sdk = (await http.get(f"http://127.0.0.1:{sdk}/metrics")).text

    # Then the records sent are counted by entity and path
    samples = _samples(connector)
    assert ("ct_insider_records_sent_total", 3.0) in [
        (name, value)
        for name, labels, value in samples
        if labels.get("entity") == "customers" and labels.get("path") == "backfill"
    ]
    # And the requests to both systems by route template and status, never by id
    latency = {
        (labels["system"], labels["route"], labels["status"])
        for name, labels, _ in samples
        if name == "ct_insider_http_request_duration_seconds_count"
    }
    assert ("commercetools", "/{project}/customers", "200") in latency
    assert any(system == "insider" and status == "200" for system, _, status in latency)
    for customer_id, email in customers:
        assert customer_id not in connector
        assert email not in connector
    # And the open timers gauge is there (the worker's upsert coalescer)
    assert any(
        name == "ct_insider_open_timers" and labels.get("kind") == "upsert_linger"
        for name, labels, _ in samples
    )
    # And the Temporal SDK's own metrics are served on theirs
    assert "temporal_workflow_completed" in temporal_sdk
    # And every line the worker logged, its own and the SDK's, is one JSON object
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    started = next(line for line in lines if line["event"] == "worker started")
    assert started["task_queue"] == task_queue  # identifiers are not masked as phone numbers
    completed = next(line for line in lines if line.get("workflow_type") == "BackfillWorkflow")
    assert completed["logger"] == "temporalio.workflow"
    assert completed["workflow_id"] == handle.id
