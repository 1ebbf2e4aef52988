"""`ct-insider doctor`: is everything the connector needs configured, reachable and
accepting our credentials? One verdict per check; the exit code says what kind of problem
(2 configuration, 3 a system unreachable or refusing our credentials, 1 reachable but
something is wrong) and the last line names the failing systems."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import httpx
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from rich.text import Text
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.config import (
    CommercetoolsSettings,
    ConfigurationError,
    InsiderSettings,
    PayloadCodecSettings,
    TemporalSettings,
    load,
)
from starters.output import ExitCode, add_json_flag, fail, print_json, stdout, unreachable

# No check may hang the doctor: each has this long.
CHECK_TIMEOUT_SECONDS = 6.0
SCHEDULE_PREFIX = "ct-insider-"

Status = Literal["OK", "WARN", "FAIL"]
# Temporal answers that mean "unreachable or refusing our credentials".
_TEMPORAL_REFUSALS = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.PERMISSION_DENIED,
    }
)
S = TypeVar("S", bound=BaseSettings)


class Verdict(BaseModel):
    system: str
    check: str
    status: Status
    detail: str
    exit_code: int = ExitCode.OK  # what this check failing means for the exit code


class DoctorReport(BaseModel):
    verdicts: list[Verdict]
    exit_code: int
    failing: list[str]  # systems with a failed check, in check order


class CheckFailed(Exception):
    def __init__(self, detail: str, exit_code: ExitCode) -> None:
        super().__init__(detail)
        self.detail = detail
        self.exit_code = exit_code


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check configuration, connectivity and credentials of commercetools, Insider "
        "and Temporal, the task queues' workers and the schedules",
        epilog="example: ct-insider doctor --json",
    )
    doctor.add_argument(
        "--mapping",
        type=Path,
        help="JSON file of mapping rules (markets; default: CT_INSIDER_MAPPING_PATH)",
    )
    add_json_flag(doctor)
    doctor.set_defaults(handler=doctor_command)


def _quiet_load(settings_class: type[S]) -> tuple[S | None, str]:
    """Load a settings group without printing: (settings, "") or (None, the message)."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return load(settings_class), ""
        except ConfigurationError as exc:
            return None, exc.message.removeprefix("configuration error: ")


async def _verdict(
    system: str,
    check: str,
    run: Callable[[], Awaitable[tuple[Status, str]]],
    within_seconds: float = CHECK_TIMEOUT_SECONDS,
) -> Verdict:
    """Run one check with a timeout; what it raises becomes a FAIL with its exit code."""
    try:
        status, detail = await asyncio.wait_for(run(), within_seconds)
    except CheckFailed as exc:
        return Verdict(
            system=system, check=check, status="FAIL", detail=exc.detail, exit_code=exc.exit_code
        )
    except TimeoutError:
        detail = f"no answer within {within_seconds:g} s"
        return Verdict(
            system=system, check=check, status="FAIL", detail=detail, exit_code=ExitCode.UNREACHABLE
        )
    except (httpx.TransportError, OSError) as exc:
        return Verdict(
            system=system,
            check=check,
            status="FAIL",
            detail=f"unreachable: {type(exc).__name__}: {exc}",
            exit_code=ExitCode.UNREACHABLE,
        )
    except RPCError as exc:
        refused = exc.status in _TEMPORAL_REFUSALS
        return Verdict(
            system=system,
            check=check,
            status="FAIL",
            detail=f"{exc.status.name if exc.status else 'error'}: {exc.message}",
            exit_code=ExitCode.UNREACHABLE if refused else ExitCode.FAILURES,
        )
    except Exception as exc:  # a diagnosis reports what it could not check, never crashes
        return Verdict(
            system=system,
            check=check,
            status="FAIL",
            detail=f"{type(exc).__name__}: {exc}",
            exit_code=ExitCode.FAILURES,
        )
    return Verdict(system=system, check=check, status=status, detail=detail)


def _skipped(system: str, check: str, why: str) -> Verdict:
    return Verdict(system=system, check=check, status="WARN", detail=f"not checked: {why}")


def _schedule_prefix() -> str:
    try:
        from ct_insider.config import SchedulesSettings
    except ImportError:  # a build without the schedules command
        return SCHEDULE_PREFIX
    settings, _ = _quiet_load(SchedulesSettings)
    return settings.prefix if settings is not None else SCHEDULE_PREFIX


async def _commercetools(settings: CommercetoolsSettings | None) -> list[Verdict]:
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.commercetools.errors import (
        CommercetoolsError,
        CommercetoolsNotFound,
        CommercetoolsUnavailable,
    )
    from ct_insider.commercetools.scopes import missing_scopes
    from ct_insider.retry import Backoff

    if settings is None:
        return [_skipped("commercetools", "token and a read", "configuration")]
    granted: frozenset[str] = frozenset()

    async def read() -> tuple[Status, str]:
        nonlocal granted
        try:
            async with CommercetoolsClient(settings, backoff=Backoff(attempts=1)) as ct:
                await ct.page("customers", page_size=1)
                granted = await ct.granted_scopes()
        except CommercetoolsUnavailable as exc:
            raise CheckFailed(f"unreachable: {exc}", ExitCode.UNREACHABLE) from exc
        except CommercetoolsNotFound as exc:  # a wrong CTP_PROJECT_KEY or CTP_API_URL
            raise CheckFailed(
                f"no project {settings.project_key}: {exc}", ExitCode.FAILURES
            ) from exc
        except CommercetoolsError as exc:  # 401/403, or a token refused (e.g. invalid_scope)
            raise CheckFailed(f"credentials refused: {exc}", ExitCode.UNREACHABLE) from exc
        return "OK", f"token granted, customers readable in project {settings.project_key}"

    async def scopes() -> tuple[Status, str]:
        missing = missing_scopes(granted, settings.project_key)
        if missing:
            named = ", ".join(f"{m.scope} ({'/'.join(m.features)})" for m in missing)
            raise CheckFailed(f"missing {named}", ExitCode.FAILURES)
        return "OK", "every feature's scope granted"

    token = await _verdict("commercetools", "token and a read", read)
    if token.status != "OK":
        return [token]
    return [token, await _verdict("commercetools", "scopes", scopes)]


async def _insider(
    settings: InsiderSettings | None,
    ct_settings: CommercetoolsSettings | None,
    mapping_path: Path | None,
) -> list[Verdict]:
    from ct_insider.insider.client import InsiderClient
    from ct_insider.insider.errors import InsiderConfigurationError, InsiderError
    from ct_insider.mapping.config import MappingConfigError
    from ct_insider.setup.verify import register_locales, verify_ucd_token
    from starters.mapping_rules import mapping_rules

    if settings is None:
        return [
            _skipped("Insider UCD", "token", "configuration"),
            _skipped("Insider catalog", "token", "configuration"),
        ]
    try:
        rules = mapping_rules(mapping_path)
    except MappingConfigError as exc:
        return [
            Verdict(
                system="configuration",
                check="mapping rules",
                status="FAIL",
                detail=str(exc),
                exit_code=ExitCode.USAGE,
            )
        ]

    def guarded(
        call: Callable[[InsiderClient], Awaitable[object]], ok: str, variable: str
    ) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def run() -> tuple[Status, str]:
            try:
                async with InsiderClient(settings) as insider:
                    await call(insider)
            except InsiderConfigurationError as exc:
                raise CheckFailed(
                    f"refused (check INSIDER_PARTNER_NAME and {variable}): {exc.message}",
                    ExitCode.UNREACHABLE,
                ) from exc
            except InsiderError as exc:
                code = ExitCode.UNREACHABLE if exc.retryable else ExitCode.FAILURES
                raise CheckFailed(str(exc), code) from exc
            return "OK", ok

        return run

    mapping = rules.config
    # The example rules pass only where CT_INSIDER_MAPPING_ALLOW_EXAMPLE lets them, and say so.
    rules_verdict = Verdict(
        system="configuration",
        check="mapping rules",
        status="WARN" if rules.example else "OK",
        detail=rules.describe().removeprefix("mapping rules: "),
        exit_code=ExitCode.OK,
    )
    ucd = guarded(verify_ucd_token, "token accepted (a profile read)", "INSIDER_API_KEY")
    catalog = guarded(
        lambda insider: register_locales(insider, mapping),
        f"token accepted; {len(mapping.catalog.markets)} market locales registered",
        "INSIDER_CATALOG_API_KEY",
    )
    tokens = list(
        await asyncio.gather(
            _verdict("Insider UCD", "token", ucd), _verdict("Insider catalog", "token", catalog)
        )
    )
    verdicts = [rules_verdict, *tokens]
    if tokens[0].status == "OK":
        verdicts.append(await _settle_matching(settings, ct_settings))
    return verdicts


async def _settle_matching(
    settings: InsiderSettings, ct_settings: CommercetoolsSettings | None
) -> Verdict:
    """Probe how the account's profile reads return events (writes and deletes the probe
    profile) and compare with the matching the workers use."""
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.commercetools.errors import CommercetoolsError
    from ct_insider.insider.client import InsiderClient
    from ct_insider.insider.errors import InsiderError
    from ct_insider.insider.probe import ProbeFailed, probe_waits
    from ct_insider.setup.matching import MatchingStore, check_matching

    if ct_settings is None:  # the stored answer lives in commercetools
        return _skipped("Insider UCD", "settle matching", "commercetools configuration")
    found: CommercetoolsSettings = ct_settings

    async def run() -> tuple[Status, str]:
        try:
            async with InsiderClient(settings) as insider, CommercetoolsClient(found) as ct:
                check = await check_matching(insider, settings, MatchingStore(ct), save=False)
        except ProbeFailed as exc:
            raise CheckFailed(str(exc), ExitCode.FAILURES) from exc
        except (InsiderError, CommercetoolsError) as exc:
            code = ExitCode.UNREACHABLE if unreachable(exc) else ExitCode.FAILURES
            raise CheckFailed(str(exc), code) from exc
        if check.status == "FAIL":
            raise CheckFailed(check.detail, ExitCode.FAILURES)
        return check.status, check.detail

    # The probe waits for Insider to make its event readable.
    waited = sum(probe_waits(settings.settle_grace_seconds))
    return await _verdict("Insider UCD", "settle matching", run, waited + CHECK_TIMEOUT_SECONDS)


async def _temporal(settings: TemporalSettings | None) -> list[Verdict]:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        DescribeTaskQueueRequest,
    )
    from temporalio.client import Client

    from ct_insider.temporal import connect

    if settings is None:
        return [_skipped("Temporal", "connect", "configuration")]
    client: Client | None = None

    async def connected() -> tuple[Status, str]:
        nonlocal client
        codec, problem = _quiet_load(PayloadCodecSettings)
        if codec is None:  # every process refuses to connect without the payload keys
            raise CheckFailed(f"configuration: {problem}", ExitCode.USAGE)
        try:
            client = await connect(settings, codec=codec)
        except RuntimeError as exc:
            detail = str(exc).splitlines()[0]
            raise CheckFailed(f"unreachable: {detail}", ExitCode.UNREACHABLE) from exc
        return "OK", f"connected to {settings.address}"

    verdict = await _verdict("Temporal", "connect", connected)
    if client is None:
        return [verdict]
    found: Client = client

    async def namespace() -> tuple[Status, str]:
        try:
            await found.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=settings.namespace)
            )
        except RPCError as exc:
            code = (
                ExitCode.FAILURES if exc.status == RPCStatusCode.NOT_FOUND else ExitCode.UNREACHABLE
            )
            raise CheckFailed(f"namespace {settings.namespace}: {exc.message}", code) from exc
        return "OK", f"namespace {settings.namespace} exists"

    def pollers(queue: str) -> Callable[[], Awaitable[tuple[Status, str]]]:
        async def run() -> tuple[Status, str]:
            answer = await found.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=settings.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            if not answer.pollers:
                raise CheckFailed(
                    f"no worker polls {queue}: start `ct-insider worker`", ExitCode.FAILURES
                )
            return "OK", f"{len(answer.pollers)} worker(s) poll {queue}"

        return run

    async def schedules() -> tuple[Status, str]:
        prefix = _schedule_prefix()
        ids = [s.id async for s in await found.list_schedules()]
        ours = [i for i in ids if i.startswith(prefix)]
        if not ours:
            return "WARN", f"no schedule named {prefix}*: run `ct-insider schedules apply`"
        return "OK", f"{len(ours)} schedule(s): {', '.join(sorted(ours))}"

    async def search_attributes() -> tuple[Status, str]:
        from ct_insider.search_attributes import (
            SearchAttributeConflict,
            cloud_types,
            missing_search_attributes,
        )

        try:
            missing = await missing_search_attributes(found, settings.namespace)
        except SearchAttributeConflict as exc:
            raise CheckFailed(str(exc), ExitCode.USAGE) from exc
        except RPCError as exc:  # e.g. a Cloud key without the right to list them
            return "WARN", f"not checked: Temporal refused to list them ({exc.message})"
        if missing:
            # Every workflow's task would fail until they exist (a worker adds them where
            # the server lets it: this one did not, or no worker started yet).
            raise CheckFailed(
                f"namespace {settings.namespace} lacks {', '.join(missing)}: run `ct-insider "
                "setup temporal` (on Temporal Cloud add them in the Cloud UI or with tcld: "
                f"{cloud_types(missing)})",
                ExitCode.USAGE,
            )
        return "OK", f"namespace {settings.namespace} has every search attribute"

    rest = await asyncio.gather(
        _verdict("Temporal", "namespace", namespace),
        _verdict("Temporal", "search attributes", search_attributes),
        _verdict("Temporal", "task queue", pollers(settings.task_queue)),
        _verdict("Temporal", "journey task queue", pollers(settings.journey_task_queue)),
        _verdict("Temporal", "schedules", schedules),
    )
    return [verdict, *rest]


async def run_doctor(mapping_path: Path | None) -> DoctorReport:
    verdicts: list[Verdict] = []
    loaded: dict[str, BaseSettings | None] = {}
    for name, settings_class in (
        ("commercetools", CommercetoolsSettings),
        ("Insider", InsiderSettings),
        ("Temporal", TemporalSettings),
    ):
        settings, problem = _quiet_load(settings_class)
        loaded[name] = settings
        verdicts.append(
            Verdict(
                system="configuration",
                check=f"{name} settings",
                status="OK" if settings is not None else "FAIL",
                detail=problem or "loaded",
                exit_code=ExitCode.OK if settings is not None else ExitCode.USAGE,
            )
        )
    ct = loaded["commercetools"]
    insider = loaded["Insider"]
    temporal = loaded["Temporal"]
    groups = await asyncio.gather(
        _commercetools(ct if isinstance(ct, CommercetoolsSettings) else None),
        _insider(
            insider if isinstance(insider, InsiderSettings) else None,
            ct if isinstance(ct, CommercetoolsSettings) else None,
            mapping_path,
        ),
        _temporal(temporal if isinstance(temporal, TemporalSettings) else None),
    )
    for group in groups:
        verdicts.extend(group)
    failed = [v for v in verdicts if v.status == "FAIL"]
    return DoctorReport(
        verdicts=verdicts,
        # The gravest problem decides: unreachable (3) over configuration (2) over wrong (1).
        exit_code=max((v.exit_code for v in failed), default=ExitCode.OK),
        failing=list(
            dict.fromkeys(
                v.check.removesuffix(" settings") if v.system == "configuration" else v.system
                for v in failed
            )
        ),
    )


_STYLES: dict[Status, str] = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def summary(report: DoctorReport) -> str:
    if not report.failing:
        return "doctor: all checks passed"
    return f"doctor: FAILED: {', '.join(report.failing)} (exit {report.exit_code})"


async def doctor_command(args: argparse.Namespace) -> int:
    report = await run_doctor(args.mapping)
    if args.json:
        print_json(report)
        if report.failing:
            fail(summary(report))
        return report.exit_code
    out = stdout()
    for v in report.verdicts:
        line = Text()
        line.append(f"{v.status:<4}", style=_STYLES[v.status])
        line.append(f" {v.system}: {v.check} - {v.detail}")
        out.print(line)
    out.print(summary(report), markup=False, highlight=False)
    return report.exit_code
