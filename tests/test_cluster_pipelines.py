"""Pipelines on several hosts: each node loads its own files. A pipeline's schedule goes
only to the nodes that have the pipeline as most nodes do, and a manual run is run once,
by one node that has it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import aiohttp
from support import Controller, until
from test_cluster import LEASE, _node_of, settled
from test_engine import start_daemon

from cronmgr.core.models import PIPELINE_JOB_PREFIX, Node, Run, RunStatus, Trigger
from cronmgr.store import open_store
from cronmgr.store.pipeline_sync import file_schedule_id

TICKER = (
    '[schedule]\ntype = "interval"\ninterval_seconds = 1\n'
    '[[steps]]\nname = "tick"\nshell = "echo {word}"\n'
)
SOLO = '[[steps]]\nname = "once"\nshell = "echo solo"\n'


async def three_nodes(
    factory: Callable[..., Controller], url: str, files: Sequence[dict[str, str]]
) -> tuple[list[Controller], list[str]]:
    """Three daemons on `url`, each home given its own pipeline files first; their ids."""
    controllers = [factory(database_url=url, lease_seconds=LEASE) for _ in files]
    for controller, written in zip(controllers, files, strict=True):
        for name, text in written.items():
            (controller.settings.pipelines_path / f"{name}.toml").write_text(text)
        await start_daemon(controller)
    await settled(url, len(files))
    ids = [next(i for i in await _ids(url) if _node_of(c, i)) for c in controllers]
    return controllers, ids


async def _ids(url: str) -> list[str]:
    async with open_store(url) as store:
        return [n.id for n in await store.list_nodes()]


async def runs_of_job(url: str, job: str) -> list[Run]:
    async with open_store(url) as store:
        return await store.list_runs(job=job, limit=1000)


async def test_a_pipeline_s_schedule_goes_only_to_the_nodes_that_have_it_as_most_do(
    controller_factory: Callable[..., Controller], pg_url: str
) -> None:
    same, other = TICKER.format(word="same"), TICKER.format(word="other")
    files = [{"ticker": same}, {"ticker": same}, {"ticker": other}]
    _, ids = await three_nodes(controller_factory, pg_url, files)
    job = PIPELINE_JOB_PREFIX + "ticker"

    async def ten_ran() -> list[Run] | None:
        runs = [r for r in await runs_of_job(pg_url, job) if r.status is RunStatus.SUCCEEDED]
        return runs if len(runs) >= 10 else None

    runs: list[Run] = await until(ten_ran, what="ten runs of the file's schedule")
    assert {r.schedule_id for r in runs} == {file_schedule_id("ticker")}
    assert ids[2] not in {r.node_id for r in runs}  # its file differs: none of its slots
    async with open_store(pg_url) as store:
        stored = await store.get_schedule(file_schedule_id("ticker"))
        (differs,) = [n for n in await store.list_nodes() if n.id == ids[2]]
    assert stored.interval_seconds == 1
    agreed = {n.pipelines["ticker"] for n in await _nodes(pg_url) if n.id != ids[2]}
    assert len(agreed) == 1 and differs.pipelines["ticker"] not in agreed


async def _nodes(url: str) -> list[Node]:
    async with open_store(url) as store:
        return await store.list_nodes()


async def test_a_manual_run_is_run_once_by_a_node_that_has_the_pipeline(
    controller_factory: Callable[..., Controller], pg_url: str
) -> None:
    files = [{}, {"solo": SOLO}, {}]
    controllers, ids = await three_nodes(controller_factory, pg_url, files)
    has_it = controllers[1]

    async def ended(job: str, count: int) -> list[Run] | None:
        runs = await runs_of_job(pg_url, PIPELINE_JOB_PREFIX + job)
        done = [r for r in runs if r.status.finished and r.trigger is not Trigger.SCHEDULE]
        return done if len(done) == count else None

    async with aiohttp.ClientSession(has_it.url, headers=has_it.headers) as http:
        for job, count in (("solo", 5), ("quick", 6)):
            for asked in range(1, count + 1):  # one at a time: its overlap policy is skip
                async with http.post(f"/api/v1/pipelines/{job}/run") as response:
                    assert response.status in (200, 201, 202), await response.text()
                await until(lambda j=job, n=asked: ended(j, n), what=f"run {asked} of {job}")
    solo = await ended("solo", 5)
    assert solo is not None and [r.status for r in solo] == [RunStatus.SUCCEEDED] * 5
    assert {r.node_id for r in solo} == {ids[1]}  # the one node that has it
    quick = await ended("quick", 6)
    assert quick is not None and [r.status for r in quick] == [RunStatus.SUCCEEDED] * 6
    assert {r.node_id for r in quick} <= set(ids)
