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
    assert point.sentence() == (
        "resumes from its stored watermark 2026-05-01T12:00:00+00:00 (left by -)"
    )


def test_since_wins_over_the_stored_watermark() -> None:
    point = resume_point("orders", running=False, since=SINCE, stored=STORED)

    assert (point.source, point.watermark) == ("since", SINCE)


def test_a_running_delta_is_attached_to() -> None:
    point = resume_point("orders", running=True, since=SINCE, stored=STORED)

    assert point.source == "running"
    assert "attached" in point.sentence()


def test_with_no_stored_watermark_nothing_starts_and_the_reason_says_what_to_run() -> None:
    # Given an entity no delta and no completed backfill ever left a watermark for
    point = resume_point("orders", running=False, since=None, stored=None)

    # Then it has nowhere to start (never "from now"), and says what to run or pass
    assert (point.source, point.watermark) == ("none", None)
    assert "`ct-insider backfill orders --wait`" in point.sentence()
    assert "--since" in point.sentence()
    catalog = resume_point("catalog", running=False, since=None, stored=None)
    assert "`ct-insider sync catalog --wait`" in catalog.sentence()


def test_a_watermark_a_backfill_left_names_the_backfill() -> None:
    stored = STORED.model_copy(update={"workflow_id": "backfill-all-beginning--now"})

    point = resume_point("orders", running=False, since=None, stored=stored)

    assert point.source == "stored"
    assert point.sentence().endswith("(left by backfill-all-beginning--now)")
