"""`ct-insider reshard` refuses what could not be done safely, before asking Temporal."""

from __future__ import annotations

import argparse

import pytest

from starters.cli import _parser
from starters.output import UsageError
from starters.reshard import reshard_request


def _args(*words: str) -> argparse.Namespace:
    return _parser().parse_args(["reshard", *words])


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (("--shards", "0"), "--shards must be 1 to 1024"),
        (("--shards", "2000"), "--shards must be 1 to 1024"),
        (("--shards", "8", "--lead", "5"), "--lead must be at least 10 seconds"),
        (("--shards", "8", "--grace", "-1"), "--grace cannot be negative"),
    ],
)
def test_an_unsafe_request_is_a_usage_error(words: tuple[str, ...], reason: str) -> None:
    # Given a request the bridges or shards could not follow safely, Then it is refused
    with pytest.raises(UsageError, match=reason):
        reshard_request(_args(*words))


def test_defaults_give_bridges_time_to_learn_the_change() -> None:
    # Given only the shard count, Then the lead and grace are the documented defaults
    request = reshard_request(_args("--shards", "8"))
    assert (request.shards, request.lead_seconds, request.grace_seconds) == (8, 30.0, 0.5)
