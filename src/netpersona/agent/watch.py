"""The watchers: one long-poll loop per watched view of the metadata service.

A watcher takes an answer only when it has the view's documented shape (checked by the view's
parser in :mod:`netpersona.agent.answers`); anything else is refused and the agent keeps the
last answer it took. Whatever happens (the service away, slow, answering garbage, a defect
here) the loop survives: it records the failure in the status record, backs off with jitter
and asks again.

It never spins either. After an answer that brought nothing new, the next request of the view
starts at least :data:`MIN_INTERVAL` after the one before, so a service that ignores long-poll
(answers at once, unchanged) costs two requests a second, not hundreds. After an answer that
brought a change the next request goes at once: a second change made soon after the first is
then seen as soon as it is made. Those requests are metered by a token bucket
(:class:`ChangeBudget`): a burst of :data:`UNPACED_BURST` back to back, then
:data:`UNPACED_PER_SECOND` a second, each waiting only for the next token (never the whole
:data:`MIN_INTERVAL`). An operator's run of quick changes is followed change by change, and a
service that answers "changed" every time costs at most that many requests a second.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from netpersona.agent import answers
from netpersona.agent.backoff import Backoff
from netpersona.agent.client import ANSWER_LIMIT, PEER_VIEW_LIMIT, MetadataClient, Watched
from netpersona.agent.status import StatusRecord, error_code, error_text

__all__ = [
    "GOSSIP_VIEWS",
    "MIN_INTERVAL",
    "UNPACED_BURST",
    "UNPACED_PER_SECOND",
    "VIEWS",
    "ChangeBudget",
    "View",
    "Watcher",
]

# The shortest time between two requests of one view after an answer that brought nothing new
# (at most two a second).
MIN_INTERVAL = 0.5
# Requests right after a change: this many back to back, then this many a second. A pass that
# follows a change takes some 50 ms (one nft batch), so twenty a second is as fast as the
# kernel can follow anyway.
UNPACED_BURST = 20
UNPACED_PER_SECOND = 20.0


@dataclass(frozen=True, slots=True)
class View:
    """A watched path, the most it may answer, and the parser its answers must pass."""

    name: str
    path: str
    check: Callable[[Mapping[str, Any]], object]
    limit: int = ANSWER_LIMIT


VIEWS = {
    v.name: v
    for v in (
        View("instance", "/v1/instance", answers.parse_instance),
        View("persona", "/v1/instance/network_persona", answers.parse_persona_answer),
        View("peers", "/v1/instance/peers", answers.parse_peers_answer, PEER_VIEW_LIMIT),
    )
}
# Watched for the control channel only: the agent converges without them.
GOSSIP_VIEWS = {
    v.name: v
    for v in (
        View("certificate", "/v1/instance/certificate", answers.parse_certificate),
        View("keys", "/v1/keys", answers.parse_key_set),
    )
}

# Called with the view's name, the answer taken, and whether it differs from the last one.
OnAnswer = Callable[[str, Watched, bool], Awaitable[None]]


async def fetch(
    client: MetadataClient, view: View, last: Watched | None, wait: float | None
) -> Watched:
    """One answer of ``view`` that has its documented shape (MalformedAnswer otherwise)."""
    answer = await client.get(
        view.path, last_etag=last.etag if last else None, wait=wait, limit=view.limit
    )
    view.check(answer.body)
    return answer


class ChangeBudget:
    """A token bucket for the requests that follow a change (:data:`UNPACED_BURST` tokens,
    refilled at :data:`UNPACED_PER_SECOND`)."""

    def __init__(
        self,
        clock: Callable[[], float],
        burst: int = UNPACED_BURST,
        per_second: float = UNPACED_PER_SECOND,
    ) -> None:
        self.clock = clock
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> float:
        """Spend a token; the seconds to wait first (0 when one was there)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        self.tokens -= 1
        # A debt is paid by waiting for the tokens it owes.
        return -self.tokens / self.per_second if self.tokens < 0 else 0.0


class Watcher:
    def __init__(
        self,
        view: View,
        client: MetadataClient,
        status: StatusRecord,
        on_answer: OnAnswer,
        *,
        wait: float,
        backoff_cap: float,
        last: Watched | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.client = client
        self.status = status
        self.on_answer = on_answer
        self.wait = wait
        self.backoff = Backoff(cap=backoff_cap)
        self.last = last
        self.sleep = sleep
        self.clock = clock
        self._started: float | None = None
        self._unpaced = False  # the next request may skip the pacing (after a change)
        self.budget = ChangeBudget(clock)
        self.log = structlog.get_logger("netpersona.agent").bind(view=view.name)

    async def _pace(self) -> None:
        """Wait until the next request may start."""
        unpaced, self._unpaced = self._unpaced, False
        if unpaced:
            gap = self.budget.take()
        elif self._started is not None:
            gap = MIN_INTERVAL - (self.clock() - self._started)
        else:
            gap = 0.0
        if gap > 0:
            self.log.debug("request paced", seconds=round(gap, 4), after_change=unpaced)
            await self.sleep(gap)
        self._started = self.clock()

    async def step(self) -> bool:
        """Ask once and hand on the answer (whether it changed); raises what went wrong."""
        # Ask without waiting the first time (a long-poll without an ETag answers only at the
        # next change) and after a failure (the agent wants to know at once that the service
        # is back, and whether anything changed while it was away).
        wait = self.wait if self.backoff.attempt == 0 and self.last is not None else None
        asked = self.clock()
        answer = await fetch(self.client, self.view, self.last, wait)
        last, self.last = self.last, answer
        changed = last is None or answer.etag != last.etag or answer.body != last.body
        self.log.debug(
            "answer taken",
            changed=changed,
            version=answer.body.get("version") if isinstance(answer.body, dict) else None,
            held=round(self.clock() - asked, 4),
        )
        self.status.watch_ok(self.view.name)
        await self.on_answer(self.view.name, answer, changed)
        return changed

    async def run(self) -> None:
        while True:
            await self._pace()
            try:
                changed = await self.step()
            except Exception as exc:  # a watch must outlive every failure
                self.failed(exc)
                await self.sleep(self.backoff.next_delay())
            else:
                self.backoff.reset()
                # After a change the next request goes at once (within the budget).
                self._unpaced = changed

    def failed(self, exc: Exception) -> None:
        code = error_code(exc)
        # A defect (an exception outside the tree) is logged with where it was raised.
        unexpected = code == "unexpected_error"
        emit = self.log.error if unexpected else self.log.warning
        emit(
            "watch failed; keeping what the agent has and trying again",
            code=code,
            error_type=type(exc).__name__,
            error=error_text(exc)[:500],
            at=_where(exc) if unexpected else None,
        )
        self.status.watch_failed(self.view.name, exc)


def _where(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
