"""A backfill's watermark never overwrites a newer one, even one written while it compared.

The store is driven over a stand-in of the commercetools client that behaves like the
custom-objects endpoint (versions, 409 on a stale version, `version: 0` = create only); the
real endpoint is exercised by tests/integration/test_onboarding_no_gap.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsConflict, CommercetoolsNotFound
from ct_insider.sync.watermarks import WatermarkStore

EARLY = datetime(2026, 5, 1, tzinfo=UTC)
LATE = datetime(2026, 5, 2, tzinfo=UTC)


class CustomObjects:
    """One container's objects; `before_write` runs once before the next write lands."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.conflicts = 0
        self.before_write: list[dict[str, Any]] = []

    async def get_json(self, path: str) -> Any:
        key = path.rsplit("/", 1)[1]
        if key not in self.objects:
            raise CommercetoolsNotFound(404, "not found", ["ResourceNotFound"])
        return self.objects[key]

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        if self.before_write:
            self._store(self.before_write.pop(0))  # another writer got there first
        current = self.objects.get(body["key"], {"version": 0})
        if "version" in body and body["version"] != current["version"]:
            self.conflicts += 1
            raise CommercetoolsConflict(409, "version mismatch", ["ConcurrentModification"])
        self.writes += 1
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        current = self.objects.get(body["key"], {"version": 0})
        stored = {"key": body["key"], "value": body["value"], "version": current["version"] + 1}
        self.objects[body["key"]] = stored
        return stored


def _store(objects: CustomObjects) -> WatermarkStore:
    return WatermarkStore(cast(CommercetoolsClient, objects))


async def test_a_watermark_is_created_where_none_is_stored() -> None:
    objects = CustomObjects()
    stored = await _store(objects).advance("customers", EARLY, workflow_id="backfill-x")
    assert (stored.watermark, stored.workflow_id) == (EARLY, "backfill-x")
    assert objects.objects["customers"]["version"] == 1


async def test_an_older_watermark_leaves_a_newer_one_alone() -> None:
    objects = CustomObjects()
    await _store(objects).save("customers", LATE, workflow_id="delta-customers")
    stored = await _store(objects).advance("customers", EARLY, workflow_id="backfill-x")
    assert (stored.watermark, stored.workflow_id) == (LATE, "delta-customers")
    assert objects.writes == 1  # the delta's save only


async def test_a_newer_watermark_written_while_it_compared_wins() -> None:
    # Given an old watermark, and a delta that saves a newer one just before our write lands
    objects = CustomObjects()
    await _store(objects).save("customers", datetime(2026, 4, 1, tzinfo=UTC))
    newer = {"watermark": LATE.isoformat(), "workflow_id": "delta-customers", "run_id": None}
    objects.before_write.append({"key": "customers", "value": newer})

    # When a backfill advances the watermark to its (older) start
    stored = await _store(objects).advance("customers", EARLY, workflow_id="backfill-x")

    # Then its write was refused as stale, and re-reading kept the delta's
    assert objects.conflicts == 1
    assert (stored.watermark, stored.workflow_id) == (LATE, "delta-customers")
    assert objects.objects["customers"]["value"]["workflow_id"] == "delta-customers"


async def test_a_backfill_since_a_moment_leaves_an_older_watermark_where_it_is() -> None:
    # Given a delta that stopped on April 1st
    objects = CustomObjects()
    stopped = datetime(2026, 4, 1, tzinfo=UTC)
    await _store(objects).save("customers", stopped, workflow_id="delta-customers")
    # When a backfill of what changed since April 20th completes on May 2nd
    since = datetime(2026, 4, 20, tzinfo=UTC)
    stored = await _store(objects).advance("customers", LATE, covered_since=since)
    # Then the delta still starts on April 1st: April 1st-20th was read by nobody
    assert (stored.watermark, stored.workflow_id) == (stopped, "delta-customers")
    # ... while a watermark at or after the backfill's --since moves on
    await _store(objects).save("customers", since, workflow_id="delta-customers")
    stored = await _store(objects).advance("customers", LATE, covered_since=since)
    assert stored.watermark == LATE
