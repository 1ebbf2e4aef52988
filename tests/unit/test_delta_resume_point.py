"""Where `ct-insider sync delta` says a delta resumes from."""

from __future__ import annotations

from datetime import UTC, datetime

from ct_insider.sync.watermarks import StoredWatermark
from starters.watermarks import resume_point

STORED = StoredWatermark(entity="orders", watermark=datetime(2026, 5, 1, 12, tzinfo=UTC))
SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_stored_watermark_is_where_a_delta_started_again_resumes() -> None:
    point = resume_point("orders", running=False, since=None, stored=STORED)

    assert (point.source, point.watermark) == ("stored", STORED.watermark)
    assert point.sentence() == "resumes from its stored watermark 2026-05-01T12:00:00+00:00"


def test_since_wins_over_the_stored_watermark() -> None:
    point = resume_point("orders", running=False, since=SINCE, stored=STORED)

    assert (point.source, point.watermark) == ("since", SINCE)


def test_a_running_delta_is_attached_to() -> None:
    point = resume_point("orders", running=True, since=SINCE, stored=STORED)

    assert point.source == "running"
    assert "attached" in point.sentence()


def test_only_an_entity_that_never_synced_starts_from_now() -> None:
    point = resume_point("orders", running=False, since=None, stored=None)

    assert (point.source, point.watermark) == ("now", None)
    assert "never synced" in point.sentence()
