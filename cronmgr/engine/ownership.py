"""Which node fires which schedule: rendezvous hashing over the live nodes.

Every node reads the same live set from the store and computes the same answer on its
own, with no messages between nodes: a schedule belongs to the live node that scores
highest for it (the hash of node id and schedule id). When a node joins or leaves, only
the schedules it wins or held move; the others stay where they are.

A pipeline's schedule is only given to a node that has the pipeline as most live nodes
have it (the same content hash): a node whose file differs is shown as differing, and
fires none of that pipeline's slots. A pipeline no live node has goes to any node, which
records its runs failed with the reason, as a lone daemon does.

Ownership decides who tries; the store's (schedule_id, scheduled_for) uniqueness decides
who wins. Two nodes that briefly both think they own a schedule (one has seen a change in
the live set, the other not yet) both try its slot, and one of them records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from cronmgr.core.models import PIPELINE_JOB_PREFIX, Node, Schedule
from cronmgr.core.pipelines.agreement import agreed_pipelines, differing


def score(node_id: str, key: str) -> int:
    """The rendezvous score of `node_id` for `key`: the highest-scoring node owns `key`."""
    digest = hashlib.blake2b(f"{node_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, node_ids: Iterable[str]) -> str | None:
    """The node that owns `key` among `node_ids` (None when there is none)."""
    # Ties (a collision of 64-bit hashes) go to the greater id, so that every node agrees.
    return max(node_ids, key=lambda node_id: (score(node_id, key), node_id), default=None)


class Ownership:
    """One node's view of who owns what, from the live set it last read."""

    def __init__(self, me: str, live: Sequence[Node]) -> None:
        self.me = me
        self.live = tuple(sorted(live, key=lambda node: node.id))
        self.node_ids = tuple(node.id for node in self.live)
        self.agreed = agreed_pipelines(node.pipelines for node in self.live)
        # Per pipeline, the nodes holding it as agreed: the candidates for its schedules.
        self._holders: dict[str, tuple[str, ...]] = {
            name: tuple(n.id for n in self.live if n.pipelines.get(name) == digest)
            for name, digest in self.agreed.items()
        }
        self._alone = self.node_ids == (me,)

    @classmethod
    def alone(cls, me: str) -> Ownership:
        """The view of a node that has read no live set yet: it owns everything."""
        return cls(me, ())

    def key(self) -> tuple[object, ...]:
        """What ownership depends on: equal keys, equal answers."""
        return self.node_ids, tuple(sorted(self.agreed.items()))

    def owns(self, schedule: Schedule) -> bool:
        """Whether this node fires `schedule`'s slots."""
        if self._alone or not self.node_ids:
            return True
        return owner(schedule.id, self._candidates(schedule.pipeline)) == self.me

    def runs_pipeline(self, name: str, key: str) -> bool:
        """Whether this node takes a manual run (`key`: its id) of pipeline `name`: it has
        the pipeline as agreed, or no live node has it and this node is the one to say so."""
        if self._alone or not self.node_ids:
            return True
        return owner(key, self._candidates(name)) == self.me

    def agreement(self, mine: Mapping[str, str]) -> dict[str, str]:
        """The agreed content of each pipeline once this node has `mine` (its files just
        read again), the others as last read."""
        others = [node.pipelines for node in self.live if node.id != self.me]
        return agreed_pipelines([*others, mine])

    def differing(self, mine: Mapping[str, str]) -> list[str]:
        """The pipelines of `mine` that this node has otherwise than most nodes."""
        return differing(mine, self.agreement(mine))

    def _candidates(self, pipeline: str | None) -> Sequence[str]:
        if pipeline is None:
            return self.node_ids
        return self._holders.get(pipeline) or self.node_ids


def pipeline_of_job(job: str) -> str | None:
    """The pipeline name of a job id, None for a target's job."""
    return job.removeprefix(PIPELINE_JOB_PREFIX) if job.startswith(PIPELINE_JOB_PREFIX) else None
