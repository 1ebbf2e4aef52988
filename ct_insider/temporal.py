"""Connecting to Temporal (local dev server or Temporal Cloud) with the pydantic converter."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from ct_insider.config import TemporalSettings

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


DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


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


async def connect(
    settings: TemporalSettings, *, with_metrics: bool = False, lazy: bool = False
) -> Client:
    runtime = None
    if with_metrics and settings.metrics_bind_address:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=settings.metrics_bind_address)
            )
        )
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        tls=_tls(settings),
        data_converter=DATA_CONVERTER,
        # Off by default: without a tracer provider the spans go nowhere, yet creating them
        # showed in the bridge's and worker's CPU profiles per event (bench/realtime.py).
        interceptors=[TracingInterceptor()] if settings.tracing else [],
        runtime=runtime,
        lazy=lazy,
    )
