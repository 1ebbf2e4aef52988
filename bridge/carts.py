"""Cart notifications and cart-bound storefront events, to the cart's workflow
(workflows/cart.py), with cart events on (CART_EVENTS_ENABLED).

The bridge never reads a cart: it tells the cart's workflow that something happened and
the workflow reads the cart once per burst. A cart change may start the cart's workflow;
an order made from a cart, or a storefront checkout, only tells a running one (a cart
nobody follows has no reminder to cancel). A new workflow starts only if the
`TimerAdmission` admits one more open cart timer: at the cap the start is refused, logged
and counted (the notification is still acknowledged: the cart is simply not followed).

Which side wins: commercetools. With cart events on, a storefront `add_to_cart` or
`remove_from_cart` that names a `cart_id` is acknowledged and not sent (counted as
`events_left_to_cart`): the cart's own change gives that event, with the cart's prices,
once. Without a `cart_id` it is sent as before. A `checkout_started` with a `cart_id` is
sent as before and also holds the cart's reminders until its next change.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from bridge.history import RPC_TIMEOUT
from ct_insider.carts.delays import parse_delays
from ct_insider.config import CartSettings
from ct_insider.journeys.envelopes import Notification
from ct_insider.journeys.storefront import StorefrontEvent
from ct_insider.logging import get_logger
from ct_insider.search_attributes import RUN_KIND, TIMER_KIND
from ct_insider.timers.kinds import TimerAdmission
from workflows.cart import CART_SIGNAL, DAY, CartInput, CartNudge, CartWorkflow, cart_workflow_id

log = get_logger(__name__)

LEFT_TO_CART = frozenset({"add_to_cart", "remove_from_cart"})


@dataclass(frozen=True)
class CartSignal:
    cart_id: str
    nudge: CartNudge
    may_start: bool  # a change may start the cart's workflow; an order or checkout may not


def cart_notification_signal(notification: Notification) -> CartSignal:
    deleted = notification.notification_type == "ResourceDeleted"
    return CartSignal(
        cart_id=notification.resource_id,
        nudge=CartNudge(what="deleted" if deleted else "changed", source=notification.id),
        may_start=not deleted,
    )


def ordered_cart_signal(cart_id: str, notification: Notification) -> CartSignal:
    return CartSignal(
        cart_id=cart_id,
        nudge=CartNudge(what="ordered", source=notification.id),
        may_start=False,
    )


class StorefrontCarts:
    """One request's storefront events as cart events see them."""

    def __init__(self) -> None:
        self.signals: list[CartSignal] = []
        self.left_to_cart = 0

    def takes(self, event: StorefrontEvent) -> bool:
        """Whether the event is left to its cart's workflow (not sent as it is)."""
        if not event.cart_id:
            return False
        if event.type in LEFT_TO_CART:
            self.left_to_cart += 1
            return True
        if event.type == "checkout_started":
            self.signals.append(
                CartSignal(
                    event.cart_id,
                    CartNudge(what="checkout", source=f"event:{event.event_id}"),
                    may_start=False,
                )
            )
        return False


class CartSignaller:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        settings: CartSettings,
        *,
        timer_admission: TimerAdmission,
    ) -> None:
        """`timer_admission`: the cap on open cart timers (the lead wires the real one)."""
        self._client = client
        self._task_queue = task_queue
        self._admission = timer_admission
        self._input = CartInput(
            cart_id="",
            reminder_delays=parse_delays(settings.reminder_delays),
            coalesce_seconds=settings.coalesce_seconds,
            forget_after_seconds=settings.forget_after_days * DAY,
        )
        self.started = 0
        self.refused = 0  # starts refused at the cap

    def workflow_input(self, cart_id: str) -> CartInput:
        """What a cart's workflow starts with (the settings' delays, coalescing, forgetting)."""
        return self._input.model_copy(update={"cart_id": cart_id})

    async def send(self, signals: Sequence[CartSignal]) -> int:
        """Return once Temporal stored them (raises RPCError, RuntimeError otherwise);
        how many carts were signalled."""
        by_cart: dict[str, list[CartSignal]] = defaultdict(list)
        for signal in signals:
            by_cart[signal.cart_id].append(signal)
        await asyncio.gather(*(self._signal(cart, batch) for cart, batch in by_cart.items()))
        return len(by_cart)

    async def _signal(self, cart_id: str, signals: list[CartSignal]) -> None:
        nudges = [signal.nudge for signal in signals]
        handle = self._client.get_workflow_handle(cart_workflow_id(cart_id))
        try:
            await handle.signal(CART_SIGNAL, nudges, rpc_timeout=RPC_TIMEOUT)
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        if not any(signal.may_start for signal in signals):
            return  # no workflow follows the cart: nothing to cancel
        try:
            admitted = await self._admission.admits_new("cart")
        except Exception as exc:  # (counting open timers asks Temporal): a retry may pass
            raise RuntimeError(f"cart timer admission not answered: {exc}") from exc
        if not admitted:
            self.refused += 1
            log.warning(
                "cart timer cap reached: cart not followed (no cart events, no reminder)",
                cart_id=cart_id,
            )
            return
        await self._client.start_workflow(
            CartWorkflow.run,
            self.workflow_input(cart_id),
            id=cart_workflow_id(cart_id),
            task_queue=self._task_queue,
            start_signal=CART_SIGNAL,
            start_signal_args=[nudges],
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(TIMER_KIND, "cart"), SearchAttributePair(RUN_KIND, "cart")]
            ),
            rpc_timeout=RPC_TIMEOUT,
        )
        self.started += 1
