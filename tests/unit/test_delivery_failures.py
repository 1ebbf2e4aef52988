"""What a journey delivery that stopped before sending tells its shard: a dependency that is
down (retried, never held against the signals) or a record of the batch (counted against
each signal, until the one that fails alone is dead-lettered), with what its history check
found and a reason fit for a dead letter."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from activities.journey import NOT_SENT, HistoryCheck, NotSent, not_sent
from ct_insider.commercetools.errors import (
    CommercetoolsAuthError,
    CommercetoolsRequestError,
    CommercetoolsUnavailable,
)
from ct_insider.commercetools.models import Customer
from ct_insider.insider.errors import InsiderConfigurationError, InsiderUnavailable

CUT_SHORT = HistoryCheck(interruption="cut-short", cut_short_at=44)


def _details(exc: Exception, check: HistoryCheck = CUT_SHORT) -> tuple[NotSent, bool]:
    failure = not_sent(exc, check)
    assert failure.type == NOT_SENT
    [details] = failure.details
    return NotSent.model_validate(details), failure.non_retryable


@pytest.mark.parametrize(
    ("exc", "retried_in_place"),
    [
        (CommercetoolsUnavailable(503, "Service Unavailable", []), True),
        (InsiderUnavailable(502, "Bad Gateway"), True),
        (httpx.ConnectError("connection refused"), True),
        (RPCError("temporal unreachable", RPCStatusCode.UNAVAILABLE, b""), True),
        (CommercetoolsAuthError(401, "invalid_token", []), False),
        (InsiderConfigurationError(403, "Access Denied"), False),
    ],
)
def test_a_dependency_down_is_never_held_against_the_signals(
    exc: Exception, retried_in_place: bool
) -> None:
    # Given a delivery stopped by a dependency that fails every batch alike
    # When the failure is built
    details, non_retryable = _details(exc)
    # Then it is not a refusal; transient ones are retried by the activity at once
    assert not details.refused
    assert non_retryable is not retried_in_place


@pytest.mark.parametrize(
    "exc",
    [
        CommercetoolsRequestError(400, "Malformed parameter: where", ["InvalidInput"]),
        KeyError("lineItems"),
    ],
)
def test_a_failure_a_record_caused_is_counted_and_not_retried_in_place(exc: Exception) -> None:
    # Given a delivery stopped by something in its batch
    details, non_retryable = _details(exc)
    # Then the shard counts it against the batch's signals (it would fail the same again)
    assert details.refused
    assert non_retryable
    assert details.reason.startswith(f"{type(exc).__name__}: ")


def test_the_history_check_travels_with_the_failure() -> None:
    # Given a delivery whose check found a task cut short, then commercetools down
    details, _ = _details(CommercetoolsUnavailable(503, "Service Unavailable", []))
    # Then the shard learns the verdict all the same
    assert (details.interruption, details.cut_short_at) == ("cut-short", 44)
    # And an unchecked delivery says so
    unchecked, _ = _details(KeyError("x"), HistoryCheck())
    assert unchecked.interruption == "unchecked"


def test_a_record_that_does_not_parse_gives_its_fields_not_its_values() -> None:
    # Given a customer record whose email is not a string
    with pytest.raises(ValidationError) as raised:
        Customer.model_validate({"id": "c-1", "version": 1, "email": ["jane@example.com"]})
    # When its delivery fails
    details, _ = _details(raised.value)
    # Then the reason names the fields, never the values (it goes to a dead letter)
    assert details.reason.startswith("ValidationError: ")
    assert "createdAt: Field required" in details.reason
    assert "jane@example.com" not in details.reason
