"""The reliability suite: fault scenarios against the real processes, one table.

    make reliability   (or: .venv/bin/python -m reliability.suite [--workers 1|2]
                        [--only NAME ...] [--list])

Starts a stack like the benchmarks do (a Temporal dev server, both emulators; worker and
bridge processes per scenario), runs each scenario in turn - one at a time, each a few
seconds to a minute - and prints one Markdown table: per scenario, the records produced,
what the Insider emulator holds of them, lost, duplicated, and the time to recover after
the fault against its bound. `--workers 2` runs every scenario with two worker processes
competing on the same task queues (the killed one is the first). The table and the raw
figures land in bench/results/. Exits non-zero if any row failed. Never part of
`make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.backfill import connect_when_up
from bench.harness import RESULTS, local_stack, machine, save
from reliability import backfill_faults, realtime_faults
from reliability.framework import Row, Scenario, ScenarioFailed, Suite, Tally, markdown_table

SCENARIOS: dict[str, Scenario] = {
    "baseline": backfill_faults.fault_free_order_backfill,
    "kill-backfill": backfill_faults.worker_killed_during_order_backfill,
    "kill-catalog": backfill_faults.worker_killed_during_catalog_sync,
    "kill-delta": backfill_faults.worker_killed_during_a_delta_window,
    "kill-check-repair": backfill_faults.worker_killed_during_a_check_repair,
    "kill-redrive": backfill_faults.worker_killed_during_a_dead_letter_redrive,
    "insider-5xx": backfill_faults.insider_5xx,
    "insider-lost-answers": backfill_faults.insider_lost_answers,
    "insider-429": backfill_faults.insider_429_bursts,
    "insider-429-no-retry-after": backfill_faults.insider_429_bursts_no_retry_after,
    "insider-slower-than-timeout": backfill_faults.insider_slower_than_the_client_timeout,
    "ct-502": backfill_faults.commercetools_502,
    "ct-503": backfill_faults.commercetools_503,
    "ct-token-expires": backfill_faults.commercetools_token_expires,
    "ct-unreachable-30s": backfill_faults.commercetools_unreachable,
    "kill-realtime": realtime_faults.worker_killed_while_events_flow,
    "redelivery-x3": realtime_faults.every_message_three_times_out_of_order,
    "temporal-restart": realtime_faults.temporal_restarted_while_events_flow,
}


# Rows bounded by the fault-free order backfill's time.
BACKFILL_ROWS = {
    "kill-backfill",
    "kill-delta",
    "kill-check-repair",
    "kill-redrive",
    "insider-5xx",
    "insider-lost-answers",
    "insider-429",
    "insider-429-no-retry-after",
    "insider-slower-than-timeout",
    "ct-502",
    "ct-503",
    "ct-token-expires",
    "ct-unreachable-30s",
}


def failed_row(name: str, error: BaseException) -> Row:
    return Row(
        name,
        Tally(0, 0, 0, 0),
        f"scenario failed: {type(error).__name__}: {error}",
        False,
        0.0,
        0.0,
        "-",
    )


async def run(names: list[str], workers: int) -> list[Row]:
    logs = Path(".dev/reliability-logs")
    rows: list[Row] = []
    # Stopped (make interrupted, a CI timeout): unwind, so every process started is stopped.
    running = asyncio.current_task()
    assert running is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    with local_stack(logs) as stack:
        client = await connect_when_up(stack.temporal_address)
        suite = Suite(stack, client, workers, logs)
        for name in names:
            started = time.monotonic()
            print(f"scenario {name} ...", flush=True)
            try:
                row = await SCENARIOS[name](suite)
            except (ScenarioFailed, Exception) as exc:
                traceback.print_exc()
                row = failed_row(name, exc)
            finally:
                # No fault outlives its scenario.
                suite.reset()
            rows.append(row)
            for note in [*row.notes, *row.tally.examples]:
                print(f"  - {note}", flush=True)
            verdict = "ok" if row.ok else "FAILED " + "; ".join(row.misses())
            print(
                f"  {verdict}: sent {row.tally.sent}, received {row.tally.received}, lost "
                f"{row.tally.lost}, duplicated {row.tally.duplicated}, recovered in "
                f"{row.recovery_seconds:.1f} s (bound {row.bound_seconds:.1f} s); {row.fault} "
                f"[{time.monotonic() - started:.0f} s]",
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, choices=[1, 2], default=1)
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run these only")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    args = parser.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    names = args.only or list(SCENARIOS)
    if "baseline" not in names and any(n in BACKFILL_ROWS for n in names):
        names = ["baseline", *names]  # the fault-free time the others are bounded by
    try:
        rows = asyncio.run(run(names, args.workers))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("stopped; every process it started is stopped", file=sys.stderr)
        return 143
    info = machine()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Reliability suite, {stamp}, {args.workers} worker process(es) on {info['cpu']} "
        f"({info['cores']} cores, {info['memory_gib']} GiB, speed probe "
        f"{info['speed_probe_seconds']} s)"
    )
    table = markdown_table(rows)
    print(f"\n{header}\n\n{table}\n")
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / f"reliability-{args.workers}-workers.md"
    latest.write_text(f"{header}\n\n{table}\n")
    saved = save(
        f"reliability-{args.workers}-workers",
        {
            "workers": args.workers,
            "rows": [
                {
                    "scenario": row.scenario,
                    "fault": row.fault,
                    "fault_seen": row.fault_seen,
                    "sent": row.tally.sent,
                    "received": row.tally.received,
                    "lost": row.tally.lost,
                    "duplicated": row.tally.duplicated,
                    "recovery_seconds": round(row.recovery_seconds, 2),
                    "bound_seconds": round(row.bound_seconds, 2),
                    "bound": row.bound_reason,
                    "ok": row.ok,
                    "notes": row.notes,
                }
                for row in rows
            ],
        },
    )
    print(f"table in {latest}, figures in {saved}")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
