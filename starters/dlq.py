"""`ct-insider dlq list|show|retry|purge`: the dead-letter store for operators.

A letter is a record a delivery path could not deliver (ct_insider/deadletters.py). Retry
hands a realtime letter back to its journey shard, marked as a re-drive: the shard
delivers it even though it has seen its key, and removes the letter once Insider took it
(a letter refused again stays, with one more attempt and the new reason).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import BaseModel, Field
from temporalio.client import Client

from bridge.commit import ShardCommitter
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.journeys.signals import JourneySignal


class RedriveReport(BaseModel):
    redriven: list[str] = Field(default_factory=list)
    not_redrivable: list[str] = Field(default_factory=list)  # no payload to send again
    missing: list[str] = Field(default_factory=list)


async def chosen(store: DeadLetterStore, keys: Sequence[str], every: bool) -> list[DeadLetter]:
    if every:
        return await store.list()
    found = [await store.get(key) for key in keys]
    return [letter for letter in found if letter is not None]


async def redrive(
    store: DeadLetterStore,
    client: Client,
    journey_task_queue: str,
    shards: int,
    keys: Sequence[str] = (),
    *,
    every: bool = False,
) -> RedriveReport:
    report = RedriveReport()
    letters = await chosen(store, keys, every)
    report.missing = sorted(set(keys) - {letter.key for letter in letters})
    signals: list[JourneySignal] = []
    for letter in letters:
        payload = (letter.redrive or {}).get("signal")
        if payload is None:
            report.not_redrivable.append(letter.key)
            continue
        signals.append(
            JourneySignal.model_validate(payload).model_copy(
                update={"redrive_of": f"{letter.key}@{letter.version}"}
            )
        )
        report.redriven.append(letter.key)
    if signals:
        committer = ShardCommitter(client, journey_task_queue, shards=shards, window_seconds=0)
        await committer.commit(signals)
    return report


def summary(letter: DeadLetter) -> dict[str, Any]:
    """What `list` shows: no payload (it may hold personal data)."""
    return {
        "key": letter.key,
        "entity": letter.entity,
        "record_id": letter.record_id,
        "attempts": letter.attempts,
        "first_seen": letter.first_seen.isoformat(),
        "last_seen": letter.last_seen.isoformat(),
        "run": letter.run,
        "market": letter.market,
        "reasons": letter.reasons,
        "redrivable": bool((letter.redrive or {}).get("signal")),
    }


def print_letters(letters: Sequence[DeadLetter], as_json: bool, out: TextIO = sys.stdout) -> None:
    rows = [summary(letter) for letter in letters]
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
        return
    if not rows:
        print("no dead letters", file=out)
        return
    print(f"{'key':40}  {'entity':16}  {'record':36}  {'tries':>5}  last seen / reason", file=out)
    for row in rows:
        reason = "; ".join(row["reasons"])[:100]
        print(
            f"{row['key']:40}  {row['entity']:16}  {row['record_id'][:36]:36}  "
            f"{row['attempts']:>5}  {row['last_seen'][:19]}  {reason}",
            file=out,
        )
    print(f"{len(rows)} dead letter(s)", file=out)
