"""Connecting to Temporal (local dev server or Temporal Cloud) with the pydantic converter
and the payload encryption codec (ct_insider/codec.py)."""

from __future__ import annotations

import functools
import logging

from temporalio.client import Client, TLSConfig
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from ct_insider import telemetry
from ct_insider.codec import EncryptionCodec
from ct_insider.config import PayloadCodecSettings, TemporalSettings, load

# One pydantic JSON converter, and so one TypeAdapter cache, for the whole process: the SDK
# builds a payload converter for every workflow activation, and the stock pydantic one
# started each with an empty cache, rebuilding the TypeAdapters of every signal and result.
_PYDANTIC_JSON = PydanticJSONPlainPayloadConverter()


class SharedPydanticPayloadConverter(CompositePayloadConverter):
    """temporalio.contrib.pydantic's converter, sharing its JSON part across instances."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _PYDANTIC_JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


# Without encryption: for replaying recorded histories. Every connection uses data_converter().
DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def data_converter(codec: PayloadCodecSettings) -> DataConverter:
    """The pydantic converter with payloads encrypted by the configured key ring; failures'
    messages and stack traces (which may quote customer data) go into an encoded payload
    too. TEMPORAL_CODEC_DISABLED=true leaves payloads in clear."""
    ring = codec.key_ring()
    return DataConverter(
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=EncryptionCodec(ring) if ring is not None else None,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def _tls(settings: TemporalSettings) -> TLSConfig | bool:
    if settings.tls_client_cert_path is None and settings.tls_server_root_ca_path is None:
        return settings.tls or settings.api_key is not None
    return TLSConfig(
        client_cert=settings.tls_client_cert_path.read_bytes()
        if settings.tls_client_cert_path
        else None,
        client_private_key=settings.tls_client_key_path.read_bytes()
        if settings.tls_client_key_path
        else None,
        server_root_ca_cert=settings.tls_server_root_ca_path.read_bytes()
        if settings.tls_server_root_ca_path
        else None,
    )


# The SDK core's lines carry their values apart (a payload's size and the limit it exceeded):
# they become fields of the JSON line rather than text appended to the message, where the
# masking would take a run of digits for a phone number.
CORE_LOG_FORWARDING = LogForwardingConfig(
    logger=logging.getLogger("temporalio.core"), append_log_fields_to_message=False
)


@functools.cache
def _runtime(metrics_bind_address: str | None) -> Runtime:
    """One SDK runtime per process (and metrics address): Prometheus metrics when asked for,
    and the SDK core's own log lines forwarded into Python logging (ct_insider.logging turns
    them into structlog JSON) instead of the core's plain-text stderr."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=CORE_LOG_FORWARDING,
            ),
            metrics=PrometheusConfig(bind_address=metrics_bind_address)
            if metrics_bind_address
            else None,
        )
    )


def tracing_interceptors(settings: TemporalSettings) -> list[TracingInterceptor]:
    """The tracing interceptor when ct_insider.telemetry set up tracing (or TEMPORAL_TRACING
    asks for spans through the global tracer provider); none otherwise: without an exporter
    the spans go nowhere, yet creating them showed in the bridge's and worker's CPU
    profiles per event (bench/realtime.py)."""
    tracer = telemetry.tracer()
    if tracer is not None:
        return [TracingInterceptor(tracer)]
    return [TracingInterceptor()] if settings.tracing else []


async def connect(
    settings: TemporalSettings,
    *,
    with_metrics: bool = False,
    lazy: bool = False,
    codec: PayloadCodecSettings | None = None,
) -> Client:
    """A client for the worker, the bridge, the CLI and the benchmarks; `codec` defaults to
    the TEMPORAL_CODEC_* settings (the command stops with exit 2 when they are missing)."""
    runtime = _runtime(settings.metrics_bind_address if with_metrics else None)
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        tls=_tls(settings),
        data_converter=data_converter(codec or load(PayloadCodecSettings)),
        interceptors=tracing_interceptors(settings),
        runtime=runtime,
        lazy=lazy,
    )
