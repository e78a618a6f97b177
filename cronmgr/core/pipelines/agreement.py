"""Which content of each pipeline the nodes of a store agree on.

Every node loads pipelines from its own files and reports each file's content hash. A
pipeline's agreed content is the hash most live nodes report (on an even vote, the
smaller hash, so that every node picks the same); a node reporting another hash differs,
and is given none of that pipeline's schedules or runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping


def agreed_pipelines(reports: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Each pipeline's content hash as most of `reports` (name → hash, one per live
    node) have it; ties go to the smaller hash."""
    votes: dict[str, Counter[str]] = {}
    for pipelines in reports:
        for name, digest in pipelines.items():
            votes.setdefault(name, Counter())[digest] += 1
    return {
        name: min(counted, key=lambda digest: (-counted[digest], digest))
        for name, counted in votes.items()
    }


def differing(pipelines: Mapping[str, str], agreed: Mapping[str, str]) -> list[str]:
    """The names of `pipelines` whose hash is not the agreed one."""
    return sorted(name for name, digest in pipelines.items() if agreed.get(name, digest) != digest)
