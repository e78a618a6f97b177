"""This daemon as a node of its store: joined, its lease renewed, the other nodes watched.

Every daemon is a node: a row in the store's `nodes` table with a lease it renews every
`lease_seconds / 3`. The renewal reads back the live set (the nodes whose lease has not
run out), from which `ownership.py` divides the schedules. A node whose lease ran out is
marked lost by the first node to see it (`expire_nodes` hands each one to one caller),
which fails its runs left running ("node … lost its lease") and frees the slots it had
claimed ahead; its schedules go to the others at their next view of the live set. The
watch wakes at the earliest lease of another node, so that a dead node's schedules are
taken over within one lease of its last renewal.

Fencing: a node that cannot renew its lease stops firing (`on_fence(True)`) once
`FENCE_FRACTION` of the lease has passed since its last renewal was sent, before any
other node can see the lease run out; it fires again (`on_fence(False)`) once a renewal
lands, rejoining first when it was declared lost meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from cronmgr.core.errors import StoreError
from cronmgr.core.models import Node, NodeState, utcnow
from cronmgr.core.version import __version__
from cronmgr.engine.ownership import Ownership
from cronmgr.store import Store

log = structlog.get_logger("cronmgr.nodes")

FENCE_FRACTION = 0.8
"""A node stops firing when this share of its lease has passed since its last renewal
was sent: two renewals in a row may fail first, and the rest of the lease, less the
takeover's lead, covers a clock skew of up to three twentieths of it between hosts."""
RETRY_SECONDS = 1.0
"""Pause after a failed renewal (capped at a tenth of the lease)."""
GONE_NODES_KEPT = timedelta(days=7)
"""Rows of nodes that left or were lost are kept this long after their last heartbeat
(pruned when a node joins), so that `cronmgr nodes` still shows a recent loss."""
EXPIRY_SLACK_SECONDS = 0.05
"""The watch wakes this long after another node's lease is taken to have run out."""
TAKEOVER_LEAD_FRACTION = 0.05
"""Another node's lease is taken to have run out this share of the lease early, so that
the takeover's own work (a few hundred ms for a thousand schedules) ends within the lease.
The lost node fenced itself at FENCE_FRACTION long before: the lead comes out of the
margin for clock skew, which leaves three twentieths of the lease."""
LOST_REASON = "node {node} lost its lease while this run was in flight"
CLAIMED_LOST_REASON = (
    "node {node} lost its lease: this slot was claimed ahead, and whether its request went"
    " out is not known"
)


def default_node_id(state_path: Path) -> str:
    """The node id of a home: the host name and a hash of the state directory, the same
    across restarts (a restarted daemon takes its runs back) and different per home."""
    digest = hashlib.blake2b(str(state_path.resolve()).encode(), digest_size=3).hexdigest()
    return f"{socket.gethostname()}-{digest}"


class Membership:
    """The node's lease, its view of the live set, and its fencing."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        lease_seconds: float,
        *,
        counts: Callable[[], tuple[int, int]],
        on_view: Callable[[Ownership], None],
        on_fence: Callable[[bool], None],
        fencing: bool = True,
    ) -> None:
        self._store = store
        # Off for a store of one host (SQLite): no other node could take over, and a
        # full disk must not stop the firing of what can still be claimed.
        self._fencing = fencing
        self.lease = lease_seconds
        self._lead = timedelta(seconds=lease_seconds * TAKEOVER_LEAD_FRACTION)
        self._counts = counts  # (schedules owned, runs in flight), for the node's row
        self._on_view = on_view
        self._on_fence = on_fence
        now = utcnow()
        self.node = Node(
            id=node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now,
        )
        self.ownership = Ownership.alone(node_id)
        self.fenced = False
        self._renewed_at = float("-inf")  # monotonic moment the last landed renewal was sent
        self._due = 0.0  # monotonic moment of the next renewal
        self._wake = asyncio.Event()
        self._fence_timer: asyncio.TimerHandle | None = None
        self._failing = False  # renewals are failing (told once)

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.node.id

    def set_pipelines(self, pipelines: Mapping[str, str]) -> None:
        """The pipelines this node has (name → content hash); told at the next renewal."""
        self.node = replace(self.node, pipelines=dict(pipelines))
        self._wake.set()

    async def join(self) -> None:
        """Join the store's nodes and read the live set (Conflict: the id is taken)."""
        sent = time.monotonic()
        await self._store.join_node(self._stamped())
        live = await self._store.renew_lease(self._stamped())
        self._landed(sent, live or [self.node])
        pruned = await self._store.prune_nodes(utcnow() - GONE_NODES_KEPT)
        log.info("node_joined", node=self.node_id, lease_seconds=self.lease, pruned=pruned)

    async def beat(self) -> None:
        """One round, for `supervised`: wait for its time, renew, watch the others."""
        await self._wait()
        sent = time.monotonic()
        now = utcnow()
        try:
            live = await self._store.renew_lease(self._stamped(now))
            if live is None:  # declared lost while cut off: its runs are failed, rejoin
                log.warning("node_rejoining", node=self.node_id, reason="its lease ran out")
                await self._store.join_node(self._stamped(now))
                live = await self._store.renew_lease(self._stamped(now)) or [self.node]
            await self._expire_others()
        except StoreError as exc:
            self._failed(exc)
            return
        self._landed(sent, live)

    async def leave(self) -> None:
        """Give the lease back on a clean stop: the others take over at once."""
        self._cancel_fence_timer()
        with contextlib.suppress(StoreError):
            await self._store.leave_node(self.node_id, utcnow())
            log.info("node_left", node=self.node_id)

    # --- the rounds ------------------------------------------------------------------

    async def _wait(self) -> None:
        delay = self._due - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

    def _stamped(self, now: datetime | None = None) -> Node:
        at = utcnow() if now is None else now
        owned, in_flight = self._counts()
        self.node = replace(
            self.node,
            heartbeat_at=at,
            lease_expires_at=at + timedelta(seconds=self.lease),
            state=NodeState.LIVE,
            schedules_owned=owned,
            runs_in_flight=in_flight,
        )
        return self.node

    async def _expire_others(self) -> None:
        now = utcnow()
        for node_id in await self._store.expire_nodes(now + self._lead):
            failed = await self._store.fail_node_runs(
                node_id,
                now,
                LOST_REASON.format(node=node_id),
                CLAIMED_LOST_REASON.format(node=node_id),
            )
            log.warning("node_lost", lost=node_id, runs_failed=failed)

    def _landed(self, sent: float, live: list[Node]) -> None:
        self._renewed_at = sent
        self._due = sent + self.lease / 3
        if self._failing:
            log.info("node_lease_renewed_again", node=self.node_id)
            self._failing = False
        self._arm_fence_timer()
        ends = utcnow() + self._lead
        live = [n for n in live if n.id == self.node_id or n.lease_expires_at > ends]
        others = [n.lease_expires_at - self._lead for n in live if n.id != self.node_id]
        if others:  # wake when the first of them runs out, to take its schedules over
            until = (min(others) - utcnow()).total_seconds() + EXPIRY_SLACK_SECONDS
            self._due = min(self._due, time.monotonic() + max(until, 0.0))
        view = Ownership(self.node_id, live)
        changed = view.key() != self.ownership.key()
        self.ownership = view
        if self.fenced:
            self.fenced = False
            log.info("node_unfenced", node=self.node_id)
            self._on_fence(False)
        elif changed:
            log.info("nodes_changed", live=list(view.node_ids))
            self._on_view(view)

    def _failed(self, exc: StoreError) -> None:
        if not self._failing:
            log.error("node_lease_not_renewed", node=self.node_id, error=str(exc))
            self._failing = True
        self._due = time.monotonic() + min(RETRY_SECONDS, self.lease / 10)

    # --- fencing ---------------------------------------------------------------------

    def _arm_fence_timer(self) -> None:
        self._cancel_fence_timer()
        if not self._fencing:
            return
        loop = asyncio.get_running_loop()
        at = self._renewed_at + self.lease * FENCE_FRACTION
        self._fence_timer = loop.call_later(max(0.0, at - time.monotonic()), self._fence)

    def _cancel_fence_timer(self) -> None:
        if self._fence_timer is not None:
            self._fence_timer.cancel()
            self._fence_timer = None

    def _fence(self) -> None:
        self._fence_timer = None
        if self.fenced:
            return
        self.fenced = True
        log.error(
            "node_fenced",
            node=self.node_id,
            reason="its lease could not be renewed: no slot fires until it is",
        )
        self._on_fence(True)
