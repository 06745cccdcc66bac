"""The server's quota and rate limiter: limit definitions cached in memory, counters in the database.

Each request that some limit applies to costs one database transaction to reserve (all its
counters or none, see :meth:`GovernanceStore.reserve`; on PostgreSQL usually one autocommitted
statement) and one to settle. Callers no limit applies
to cost nothing: the definitions are read from the database at most every ``refresh_s`` seconds
(and at once after this server changed them), so a limit set through another server applies
within ``refresh_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio.to_thread

from gpustack_core.gateway import LimitExceeded, LimitSnapshot, Principal, Reservation
from gpustack_core.gateway.limits import tightest

from .store.governance import CounterClaim, GovernanceStore, LimitBlocked, LimitRecord, window_of

__all__ = ["StoreLimiter"]


@dataclass(frozen=True)
class _Claimed:
    """One counter a reservation touched."""

    limit: LimitRecord
    window_start: int
    amount: int


class StoreLimiter:
    """:class:`gpustack_core.gateway.Limiter` on the governance tables."""

    def __init__(self, refresh_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        """Re-read limit definitions at most every ``refresh_s`` seconds; ``clock`` gives UTC epoch
        seconds (the limit windows follow it)."""
        self.store: GovernanceStore | None = None
        self.refresh_s = refresh_s
        self.clock = clock
        self._by_subject: dict[tuple[str, str], tuple[LimitRecord, ...]] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Re-read the limit definitions before the next request (this server changed them)."""
        self._loaded_at = float("-inf")

    def _definitions(self) -> dict[tuple[str, str], tuple[LimitRecord, ...]]:
        now = time.monotonic()
        if now - self._loaded_at < self.refresh_s or self.store is None:
            return self._by_subject
        with self._lock:
            if now - self._loaded_at >= self.refresh_s:
                grouped: dict[tuple[str, str], list[LimitRecord]] = {}
                for lim in self.store.list_limits():
                    grouped.setdefault((lim.subject_kind, lim.subject_id), []).append(lim)
                self._by_subject = {k: tuple(v) for k, v in grouped.items()}
                self._loaded_at = now
        return self._by_subject

    def applicable(self, principal: Principal, model: str) -> list[LimitRecord]:
        """The limits that count a request of ``principal`` for ``model``."""
        defs = self._by_subject  # reserve() re-reads them (in a thread) when they are stale
        subjects = [("global", ""), ("user", principal.user_id)]
        if principal.key_id is not None:
            subjects.append(("key", principal.key_id))
        subjects.extend(("team", team) for team in principal.teams)
        return [lim for s in subjects for lim in defs.get(s, ()) if lim.model in ("", model)]

    async def reserve(self, principal: Principal, model: str, tokens: int) -> Reservation | None:
        """Reserve one request and ``tokens`` tokens on every applicable limit, or raise 429's exception."""
        if self.store is None:
            return None
        if time.monotonic() - self._loaded_at >= self.refresh_s:
            await anyio.to_thread.run_sync(self._definitions)
        limits = self.applicable(principal, model)
        if not limits:
            return None
        now = self.clock()
        claims: list[_Claimed] = []
        resets: list[float | None] = []
        for lim in limits:
            start, reset = window_of(lim.period, now)
            claims.append(_Claimed(lim, start, 1 if lim.metric == "requests" else tokens))
            resets.append(reset)
        store = self.store
        try:
            after = await anyio.to_thread.run_sync(
                store.reserve,
                [CounterClaim(c.limit.id, c.window_start, c.limit.max_value, c.amount) for c in claims],
            )
        except LimitBlocked as blocked:
            lim = claims[blocked.index].limit
            reset = resets[blocked.index]
            snapshot = tightest(
                [
                    (c.limit.metric, c.limit.max_value, c.limit.max_value, r)
                    for c, r in zip(claims, resets, strict=True)
                    if c.limit is lim
                ]
            )
            raise _exceeded(lim, claims[blocked.index].amount, blocked.used, reset, snapshot) from None
        snapshot = tightest(
            [
                (c.limit.metric, c.limit.max_value, used, r)
                for c, used, r in zip(claims, after, resets, strict=True)
            ]
        )
        return Reservation(tokens=tokens, snapshot=snapshot, handle=tuple(claims))

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Replace the reserved tokens by the tokens used (the request counts stay)."""
        if self.store is None:
            return
        claims: Sequence[_Claimed] = reservation.handle
        changes = [
            (c.limit.id, c.window_start, used_tokens - c.amount) for c in claims if c.limit.metric == "tokens"
        ]
        if any(delta for _, _, delta in changes):
            await anyio.to_thread.run_sync(self.store.adjust, changes)


def _exceeded(
    lim: LimitRecord, amount: int, used: int, reset: float | None, snapshot: LimitSnapshot
) -> LimitExceeded:
    scope = "every caller" if lim.subject_kind == "global" else f"{lim.subject_kind} {lim.subject_id}"
    model = f" for model '{lim.model}'" if lim.model else ""
    per = "in total" if lim.period == "total" else f"per {lim.period}"
    wanted = (
        "1 more request" if lim.metric == "requests" else f"{amount} more tokens (max_tokens plus the prompt)"
    )
    when = "" if reset is None else f" Retry in {max(1, int(reset + 0.999))} s."
    message = (
        f"Rate limit reached: {scope} may use {lim.max_value} {lim.metric} {per}{model}; "
        f"{used} are used and this request needs {wanted}.{when}"
    )
    quota = lim.metric == "tokens" and lim.period in ("day", "month", "total")
    return LimitExceeded(
        message,
        retry_after_s=reset,
        code="insufficient_quota" if quota else "rate_limit_exceeded",
        snapshot=snapshot,
    )
