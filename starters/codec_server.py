"""`ct-insider codec-server`: Temporal's remote codec protocol (starters/codec_app.py), so
authorized operators read encrypted payloads in the Temporal UI (Settings -> Data Encoder,
or the UI server's `codec.endpoint`) or the `temporal` CLI (`--codec-endpoint
http://host:port --codec-auth 'Bearer <token>'`).
"""

from __future__ import annotations

import argparse

from ct_insider.codec_keys import generate_key_entry
from ct_insider.config import CodecServerSettings, PayloadCodecSettings, load
from ct_insider.logging import get_logger
from starters.output import ExitCode, UsageError, add_json_flag, print_json

log = get_logger(__name__)


async def codec_server_command(args: argparse.Namespace) -> int:
    if args.generate_key:
        try:
            entry = generate_key_entry(args.generate_key)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            key_id, _, key = entry.partition(":")
            print_json({"key_id": key_id, "key": key, "entry": entry})
        else:
            print(entry)
        return ExitCode.OK
    codec_settings = load(PayloadCodecSettings)
    ring = codec_settings.key_ring()
    if ring is None:
        raise UsageError("TEMPORAL_CODEC_DISABLED=true: there is nothing to decode")
    server = load(CodecServerSettings)
    # Imported here: the other commands need neither FastAPI nor the Temporal SDK's protos.
    import uvicorn

    from ct_insider.codec import EncryptionCodec
    from ct_insider.oidc import OidcPolicy, OidcVerifier
    from starters.codec_app import create_codec_app

    policy = OidcPolicy.from_settings(server)
    verifier = OidcVerifier(policy) if policy is not None else None
    app = create_codec_app(EncryptionCodec(ring), server.token, server.origins, verifier)
    log.info(
        "codec server",
        host=server.host,
        port=server.port,
        origins=server.origins,
        sso_issuer=policy.issuer if policy is not None else None,
    )
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's lines go through ct_insider.logging (JSON on a server)
    )
    await uvicorn.Server(config).serve()
    return ExitCode.OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "codec-server",
        help="serve Temporal's codec protocol so the Temporal UI shows decrypted payloads "
        "(CODEC_SERVER_TOKEN and/or CODEC_SERVER_OIDC_*, CODEC_SERVER_PORT, "
        "CODEC_SERVER_CORS_ORIGINS, TEMPORAL_CODEC_KEYS)",
        epilog="example: CODEC_SERVER_TOKEN=... ct-insider codec-server  |  "
        "ct-insider codec-server --generate-key 2026-12",
    )
    parser.add_argument(
        "--generate-key",
        metavar="KEY_ID",
        help="print a new `KEY_ID:base64key` entry for TEMPORAL_CODEC_KEYS and exit",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=codec_server_command)
