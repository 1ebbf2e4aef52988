"""The Insider emulator's HTTP surface: Insider's own routes plus an inspection/fault API.

UCD routes are served under /api/user/v1/..., Catalog routes under /v2/...; point both
INSIDER_UNIFICATION_URL and INSIDER_CATALOG_URL at this server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.insider.drift import DriftError, plant
from emulators.insider.store import InsiderState, identifier_pairs
from emulators.insider.validation import validate_catalog_item, validate_user

MAX_BODY_BYTES = 5_000_000
MAX_USERS = 1_000
MAX_CATALOG_RECORDS = 10_000
MAX_CATALOG_RECORD_BYTES = 512 * 1024

# Documented per-minute limits, per bucket (profile: quota units, the others: requests).
DEFAULT_LIMITS = {
    "upsert": 25_000,
    "profile": 1_000,
    "identity": 2_000,
    "delete": 10_000,
    "anonymize": 500,
    "catalog": 60,
}


UNKNOWN_ERROR = "The request processing has failed because of an unknown error."
# Insider's default event params (academy: default events). An account whose profile reads
# leave custom params out returns these alone.
DEFAULT_EVENT_PARAMS = frozenset(
    {
        "product_id",
        "name",
        "taxonomy",
        "currency",
        "unit_price",
        "unit_sale_price",
        "quantity",
        "url",
        "product_image_url",
        "event_group_id",
        "locale",
        "color",
        "size",
        "shipping_cost",
        "promotion_name",
        "promotion_discount",
    }
)
# What a profile read costs of the profile quota: the documented example reports 2.5 units.
PROFILE_READ_COST = 2.5


@dataclass
class Faults:
    error_rate: float = 0.0
    # The request is processed, then answered 500: a commit whose answer got lost, the case
    # that makes blind retries of event upserts store events twice.
    lost_answer_rate: float = 0.0
    lost_answer_buckets: list[str] = field(default_factory=lambda: ["upsert"])
    # The next N requests to those buckets lose their answer for sure (then the rate applies).
    lost_answers_next: int = 0
    rate_limited_rate: float = 0.0
    retry_after_seconds: float = 1.0
    latency_ms: float = 0.0
    # Requests to `hold_buckets` after the first `hold_after` (counted from when these faults
    # were set) are received, then held - not processed - until the faults are set again:
    # a test can kill a sender while its request is surely in Insider's hands, whatever the
    # machine's load (a latency only makes that likely).
    hold_after: int | None = None
    hold_buckets: list[str] = field(default_factory=lambda: ["upsert"])
    send_retry_after: bool = True
    # Custom events not (yet) defined in InOne: users carrying one are refused, as Insider
    # refuses what its schema does not know.
    undefined_events: list[str] = field(default_factory=list)


@dataclass
class AccountReads:
    """How the emulated account's profile reads answer where Insider's docs are silent."""

    # False: an event comes back with its default params only - custom ones (`event_id`)
    # are left out even when asked for by name.
    custom_event_params: bool = True


@dataclass
class EmulatorConfig:
    partner_name: str = "demo"
    api_key: str = "ucd-token"
    catalog_api_key: str = "catalog-token"
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    seed: int = 7


class SlidingWindow:
    """Units spent per bucket in the last 60 seconds (a request is 1 unit, a profile read
    costs PROFILE_READ_COST)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[tuple[float, float]]] = {}
        self._used: dict[str, float] = {}

    def admit(self, bucket: str, per_minute: float, cost: float = 1.0) -> float | None:
        """None when admitted, else seconds until enough units free up."""
        now = time.monotonic()
        hits = self._hits.setdefault(bucket, deque())
        used = self._used.get(bucket, 0.0)
        while hits and hits[0][0] <= now - 60.0:
            used -= hits.popleft()[1]
        self._used[bucket] = used
        if used + cost > per_minute:
            return max(0.0, hits[0][0] + 60.0 - now) if hits else 60.0
        hits.append((now, cost))
        self._used[bucket] = used + cost
        return None

    def used(self, bucket: str) -> float:
        return round(self._used.get(bucket, 0.0), 2)


def _unix_seconds(timestamp: Any) -> float | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class InsiderEmulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = InsiderState()
        self.faults = Faults()
        self.reads = AccountReads()
        self.window = SlidingWindow()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()  # requests being processed, per bucket
        self.held: Counter[str] = Counter()  # requests held by `Faults.hold_after`, per bucket
        self._hold_counted: Counter[str] = Counter()  # requests counted against hold_after
        # Set when the faults holding requests are replaced: the held requests go on.
        self._released = asyncio.Event()
        self.random = random.Random(self.config.seed)
        # Seconds of Retry-After sent, per bucket: the waits Insider imposed, which a test's
        # time bound must allow for (they are not the connector's doing).
        self.imposed_waits: Counter[str] = Counter()

    # -- cross-cutting: auth, limits, faults --------------------------------------------

    async def _guard(self, request: Request, bucket: str, catalog: bool) -> Response | None:
        self.requests[bucket] += 1
        partner = request.headers.get("x-partner-name", "")
        token = request.headers.get("x-request-token", "")
        expected = self.config.catalog_api_key if catalog else self.config.api_key
        partner_ok = partner == partner.lower() and hmac.compare_digest(
            partner, self.config.partner_name
        )
        if not (partner_ok and hmac.compare_digest(token.encode(), expected.encode())):
            if catalog:
                return _error(
                    401,
                    {"success": False, "message": "Partner token authentication is unsuccessful."},
                )
            return _error(
                403,
                {
                    "success": False,
                    "message": "Access Denied. You do not have sufficient access to perform this action.",
                },
            )
        cost = PROFILE_READ_COST if bucket == "profile" else 1.0
        wait = self.window.admit(bucket, self.config.limits.get(bucket, 10**9), cost)
        if (
            wait is None
            and self.faults.rate_limited_rate
            and self.random.random() < self.faults.rate_limited_rate
        ):
            wait = self.faults.retry_after_seconds
        if wait is not None:
            headers = None
            if self.faults.send_retry_after:
                seconds = max(1, round(wait))
                self.imposed_waits[bucket] += seconds
                headers = {"Retry-After": str(seconds)}
            return _error(429, {"error": "rejected: too many requests"}, headers)
        if self.faults.error_rate and self.random.random() < self.faults.error_rate:
            return _error(500, {"success": False, "message": UNKNOWN_ERROR})
        return None

    async def _json_body(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return None, _error(
                400, {"error": "request body is bigger than maximum allowed size 5,000,000 bytes"}
            )
        try:
            return json.loads(raw), None
        except ValueError:
            return None, _error(400, {"error": "invalid json body: bad request"})

    def _route(
        self,
        bucket: str,
        handler: Callable[[Any], Awaitable[Response] | Response],
        catalog: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            self.in_flight[bucket] += 1
            try:
                return await answer(request)
            finally:
                self.in_flight[bucket] -= 1

        async def answer(request: Request) -> Response:
            refused = await self._guard(request, bucket, catalog)
            if refused is not None:
                self.statuses[f"{bucket}:{refused.status_code}"] += 1
                return refused
            body, bad = await self._json_body(request)
            await self._hold(bucket)
            if self.faults.latency_ms:
                # Processing time: the request was received whole, so a sender that dies
                # now has still sent it (its users are stored when this ends).
                await asyncio.sleep(self.faults.latency_ms / 1000)
            response = bad if bad is not None else handler(body)
            if not isinstance(response, Response):
                response = await response
            if response.status_code == 200 and bucket in self.faults.lost_answer_buckets:
                if self.faults.lost_answers_next > 0:
                    self.faults.lost_answers_next -= 1
                    response = _error(500, {"success": False, "message": UNKNOWN_ERROR})
                elif (
                    self.faults.lost_answer_rate
                    and self.random.random() < self.faults.lost_answer_rate
                ):
                    response = _error(500, {"success": False, "message": UNKNOWN_ERROR})
            self.statuses[f"{bucket}:{response.status_code}"] += 1
            return response

        return endpoint

    async def _hold(self, bucket: str) -> None:
        hold_after = self.faults.hold_after
        if hold_after is None or bucket not in self.faults.hold_buckets:
            return
        self._hold_counted[bucket] += 1
        if self._hold_counted[bucket] <= hold_after:
            return
        released = self._released  # replaced (and set) when the faults change
        self.held[bucket] += 1
        try:
            await released.wait()
        finally:
            self.held[bucket] -= 1

    def _release_held(self) -> None:
        self._released.set()
        self._released = asyncio.Event()
        self._hold_counted.clear()

    # -- UCD ---------------------------------------------------------------------------

    def upsert(self, body: Any) -> Response:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("users"), list)
            or not body["users"]
        ):
            return _error(400, {"error": "users must be defined: bad request"})
        users = body["users"]
        if len(users) > MAX_USERS:
            return _error(
                400, {"error": f"users must contain at most {MAX_USERS} items: bad request"}
            )
        skip_hook = body.get("skip_hook") is True
        all_errors: dict[str, list[str]] = {}
        failed = 0
        undefined = frozenset(self.faults.undefined_events)
        for index, user in enumerate(users):
            errors = validate_user(index, user, undefined)
            if errors:
                failed += 1
                all_errors.update(errors)
                continue
            self.state.apply_upsert(user, skip_hook=skip_hook)
        succeeded = len(users) - failed
        return JSONResponse(
            {
                "data": {
                    "successful": {"count": succeeded} if succeeded else {},
                    "fail": {"count": failed, "errors": all_errors} if failed else {},
                }
            }
        )

    def profile(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return _error(400, {"error": "body must be an object: bad request"})
        if body.get("insider_id"):
            found = self.state.profiles.get(str(body["insider_id"]))
        elif isinstance(body.get("identifiers"), dict):
            found = self.state.find(body["identifiers"])
        else:
            return _error(
                400, {"error": "identifiers or insider_id must be specified: bad request"}
            )
        if found is None:
            return _error(404, {"error": "no such user for these identifiers: no data"})
        wanted = body.get("attributes") or ["*"]
        attributes = {**found.attributes, **found.identifiers, "iid": found.insider_id}
        if "*" not in wanted:
            attributes = {k: v for k, v in attributes.items() if k in wanted or k == "iid"}
        answer: dict[str, Any] = {"attributes": attributes}
        events_query = body.get("events")
        if isinstance(events_query, dict):
            answer["events"] = self._profile_events(found.events, events_query)
        if body.get("quota") is True:
            answer["quota"] = {
                "cost": PROFILE_READ_COST,
                "used": self.window.used("profile"),
                "total": self.config.limits["profile"],
            }
        return JSONResponse(answer)

    def _profile_events(
        self, events: list[dict[str, Any]], query: dict[str, Any]
    ) -> dict[str, list[dict[str, Any]]]:
        wanted = {w.get("event_name"): w.get("params") or [] for w in query.get("wanted") or []}
        start, end = query.get("start_date"), query.get("end_date")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            name = event.get("event_name")
            if name not in wanted:
                continue
            # start_date / end_date are unix seconds bounding the event time.
            at = _unix_seconds(event.get("timestamp"))
            if at is not None and (
                (isinstance(start, int | float) and at < start)
                or (isinstance(end, int | float) and at > end)
            ):
                continue
            params = event.get("event_params") or {}
            found_custom = params.get("custom")
            custom = found_custom if isinstance(found_custom, dict) else {}
            if not self.reads.custom_event_params:
                selected = {
                    p: params[p]
                    for p in wanted[name] or params
                    if p in DEFAULT_EVENT_PARAMS and p in params
                }
            elif wanted[name]:
                # A custom param is asked for by its name, like a default one.
                selected = {p: params.get(p, custom.get(p)) for p in wanted[name]}
            else:
                selected = dict(params)
            grouped.setdefault(str(name), []).append(
                {**selected, "created_date": event.get("timestamp")}
            )
        return grouped

    def delete(self, body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("identifiers"), dict):
            return _error(400, {"error": "identifiers must be specified: bad request"})
        self.state.delete(body["identifiers"])
        return JSONResponse({})

    def anonymize(self, body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("identifiers"), dict):
            return _error(400, {"error": "identifiers must be specified: bad request"})
        if not self.state.anonymize(body["identifiers"]):
            return _error(404, {"error": "no such user for these identifiers: no data"})
        return JSONResponse({})

    def identity(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return _error(400, {"error": "body must be an object: bad request"})
        old = identifier_pairs(body.get("old_identifier") or {})
        new = identifier_pairs(body.get("new_identifier") or {})
        if len(old) != 1 or len(new) != 1 or old[0][0] != new[0][0]:
            return _error(
                400,
                {"error": "exactly one old and one new identifier of the same type: bad request"},
            )
        if old[0] == new[0]:
            return _error(400, {"error": "identifier values are the same: bad request"})
        if new[0] in self.state.index:
            return _error(400, {"error": "new identifier already belongs to a user: bad request"})
        if self.state.change_identifier(old[0], new[0]) is None:
            return _error(404, {"error": "no such user for these identifiers: no data"})
        return JSONResponse({})

    # -- Catalog -----------------------------------------------------------------------

    def locales(self, body: Any) -> Response:
        if not isinstance(body, list) or not body:
            return _error(400, {"success": False, "message": "body must be a non-empty array"})
        created = 0
        for entry in body:
            code = entry.get("language_and_country_code") if isinstance(entry, dict) else None
            if not isinstance(code, str) or not code:
                return _error(
                    400, {"success": False, "message": "language_and_country_code is required"}
                )
            key = f"{code}:{entry['store_id']}" if entry.get("store_id") else code
            if key not in self.state.locales:
                self.state.locales.add(key)
                created += 1
        return JSONResponse({"success": True, "created_locale_count": created})

    def catalog_write(self, body: Any, *, partial: bool) -> Response:
        if not isinstance(body, list):
            return _error(400, {"success": False, "message": "body must be an array of records"})
        if len(body) > MAX_CATALOG_RECORDS:
            return _error(
                400, {"success": False, "message": "Maximum allowed record count is exceeded."}
            )
        invalid: dict[tuple[str, str], list[str]] = {}
        valid = 0
        for item in body:
            problems = validate_catalog_item(item, self.state.locales, partial=partial)
            if not problems and len(json.dumps(item)) > MAX_CATALOG_RECORD_BYTES:
                problems = [("record", "Field is invalidated: record is larger than 512 KB")]
            if not problems and not self.state.catalog_put(item, partial=partial):
                problems = [("item_id", "Field is invalidated: item does not exist")]
            if problems:
                document_id = str(item.get("item_id")) if isinstance(item, dict) else "?"
                for problem in problems:
                    invalid.setdefault(problem, []).append(document_id)
            else:
                valid += 1
        details = [
            {"field": f, "message": m, "count": len(ids), "document_ids": ids}
            for (f, m), ids in invalid.items()
        ]
        invalid_count = len(body) - valid
        return JSONResponse(
            {
                "success": True,
                "message": {
                    "valid": {"count": valid},
                    "invalid": {"count": invalid_count, "details": details},
                    "warnings": {"count": 0, "details": []},
                    "invalidRatio": round(invalid_count / len(body), 4) if body else 0,
                },
            }
        )

    # -- inspection and fault injection (not part of Insider's API) ---------------------

    async def inspect_users(self, request: Request) -> Response:
        include_events = request.query_params.get("include_events", "1") != "0"
        profiles = list(self.state.profiles.values())
        identifier = request.query_params.get("identifier")
        if identifier and "=" in identifier:
            kind, value = identifier.split("=", 1)
            found = self.state.find({kind: value})
            profiles = [found] if found else []
        held = request.query_params.get("holding")
        if held:  # any profile holding this value anywhere (an erasure's proof)
            holding = {profile.insider_id for profile in self.state.holding(held)}
            profiles = [p for p in profiles if p.insider_id in holding]
        return JSONResponse(
            {"count": len(profiles), "users": [p.to_json(include_events) for p in profiles]}
        )

    async def inspect_events(self, request: Request) -> Response:
        name = request.query_params.get("event_name")
        events = [
            {**event, "insider_id": profile.insider_id}
            for profile in self.state.profiles.values()
            for event in profile.events
            if name is None or event.get("event_name") == name
        ]
        return JSONResponse({"count": len(events), "events": events})

    async def inspect_catalog(self, request: Request) -> Response:
        locale = request.query_params.get("locale")
        items = [
            item for (_, loc), item in self.state.catalog.items() if locale is None or loc == locale
        ]
        return JSONResponse(
            {"count": len(items), "items": items, "locales": sorted(self.state.locales)}
        )

    async def inspect_stats(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "requests": dict(self.requests),
                "statuses": dict(self.statuses),
                "imposed_wait_seconds": dict(self.imposed_waits),
                "in_flight": {k: v for k, v in self.in_flight.items() if v},
                "held": {k: v for k, v in self.held.items() if v},
                "users": len(self.state.profiles),
                "events": sum(len(p.events) for p in self.state.profiles.values()),
                "catalog_items": len(self.state.catalog),
            }
        )

    async def reset(self, _request: Request) -> Response:
        self.state.reset()
        self.faults = Faults()
        self._release_held()
        self.reads = AccountReads()
        self.window = SlidingWindow()
        self.requests.clear()
        self.statuses.clear()
        self.imposed_waits.clear()
        self.config.limits = dict(DEFAULT_LIMITS)
        # Fault draws depend only on what a test does, not on which tests ran before it.
        self.random = random.Random(self.config.seed)
        return Response(status_code=204)

    async def set_faults(self, request: Request) -> Response:
        try:
            body = await request.json()
            self.faults = Faults(**body)
            self._release_held()
        except (ValueError, TypeError) as exc:
            return _error(400, {"error": f"invalid faults: {exc}"})
        return JSONResponse(self.faults.__dict__)

    async def set_reads(self, request: Request) -> Response:
        try:
            body = await request.json()
            reads = AccountReads(**body)
            if not isinstance(reads.custom_event_params, bool):
                raise TypeError("custom_event_params must be true or false")
        except (ValueError, TypeError) as exc:
            return _error(400, {"error": f"invalid reads: {exc}"})
        self.reads = reads
        return JSONResponse(self.reads.__dict__)

    async def plant_drift(self, request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise DriftError("body must be an object")
            return JSONResponse(plant(self.state, body))
        except (ValueError, DriftError) as exc:
            return _error(400, {"error": f"invalid drift: {exc}"})

    async def set_limits(self, request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict) or not all(
                k in DEFAULT_LIMITS and isinstance(v, int) and v > 0 for k, v in body.items()
            ):
                raise ValueError(
                    f"expected per-minute integers for buckets {sorted(DEFAULT_LIMITS)}"
                )
        except ValueError as exc:
            return _error(400, {"error": f"invalid limits: {exc}"})
        self.config.limits.update(body)
        return JSONResponse(self.config.limits)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/user/v1/upsert", self._route("upsert", self.upsert), methods=["POST"]),
                Route(
                    "/api/user/v1/profile", self._route("profile", self.profile), methods=["POST"]
                ),
                Route("/api/user/v1/delete", self._route("delete", self.delete), methods=["POST"]),
                Route(
                    "/api/user/v1/anonymize",
                    self._route("anonymize", self.anonymize),
                    methods=["POST"],
                ),
                Route(
                    "/api/user/v1/identity",
                    self._route("identity", self.identity),
                    methods=["PATCH"],
                ),
                Route(
                    "/v2/locales/batch",
                    self._route("catalog", self.locales, catalog=True),
                    methods=["POST"],
                ),
                Route(
                    "/v2/ingest",
                    self._route(
                        "catalog", lambda b: self.catalog_write(b, partial=False), catalog=True
                    ),
                    methods=["POST"],
                ),
                Route(
                    "/v2/update",
                    self._route(
                        "catalog", lambda b: self.catalog_write(b, partial=True), catalog=True
                    ),
                    methods=["POST"],
                ),
                Route("/_emulator/users", self.inspect_users, methods=["GET"]),
                Route("/_emulator/events", self.inspect_events, methods=["GET"]),
                Route("/_emulator/catalog", self.inspect_catalog, methods=["GET"]),
                Route("/_emulator/stats", self.inspect_stats, methods=["GET"]),
                Route("/_emulator/reset", self.reset, methods=["POST"]),
                Route("/_emulator/faults", self.set_faults, methods=["POST"]),
                Route("/_emulator/limits", self.set_limits, methods=["POST"]),
                Route("/_emulator/reads", self.set_reads, methods=["POST"]),
                Route("/_emulator/drift", self.plant_drift, methods=["POST"]),
                Route(
                    "/_emulator/health", lambda _r: JSONResponse({"status": "ok"}), methods=["GET"]
                ),
            ]
        )


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    return InsiderEmulator(config).app()
