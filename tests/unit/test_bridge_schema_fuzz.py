"""Schemathesis against the bridge's own OpenAPI document (/openapi.json), in-process (ASGI):
requests drawn from the documented schema and against it (positive and negative modes) on
every route; no answer is a 5xx, and each status, content type and body is one the document
lists (the /webhooks/commercetools body is documented in bridge/app.py: every envelope)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.hostile_bridge import TOKEN, hostile_bridge

BRIDGE = hostile_bridge()
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", BRIDGE.app)
PROFILE_EXAMPLES = settings.default.max_examples if settings.default is not None else 60


# A third of the profile's examples per operation: 20 in `make test` (~6 s for both POSTs).
@SCHEMA.parametrize()
@settings(max_examples=max(10, PROFILE_EXAMPLES // 3))
def test_the_bridge_answers_any_request_as_its_document_says(
    case: schemathesis.Case[Any],
) -> None:
    # Given a request drawn from (or against) the bridge's OpenAPI document, with the token
    # When it is sent, Then the answer is no 5xx and conforms to the document.
    # Not checked: that every schema-valid request is accepted (a JSON schema cannot say all
    # the bridge checks: a cart view's lines need a price, Pub/Sub data must decode to a
    # delivery; those are the documented 422s), nor that every schema-violating one is
    # refused (pydantic's lax mode takes a few values the schema types strictly, such as a
    # Unix time for a date-time, and means the same by them).
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
