"""The CT log's read threads (`DaemonThreads`): daemon threads, started as work needs
them up to a bound, left running at shutdown (a read stuck in the database must not
hold the process), and ended once their executor is shut down or dropped."""

from __future__ import annotations

import gc
import threading

import pytest

from acmekit.ct.log import DaemonThreads


def _workers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name + "-")]


def test_results_and_errors_come_back_from_daemon_threads() -> None:
    pool = DaemonThreads(2, "reads-results")
    assert pool.submit(sum, [1, 2, 3]).result(timeout=10) == 6
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(timeout=10)
    assert all(t.daemon for t in _workers("reads-results"))
    pool.shutdown()


def test_at_most_max_workers_and_shutdown_does_not_wait_for_a_stuck_job() -> None:
    pool = DaemonThreads(2, "reads-stuck")
    release = threading.Event()
    stuck = [pool.submit(release.wait, 60) for _ in range(3)]
    assert len(_workers("reads-stuck")) == 2
    pool.shutdown(wait=True)  # returns at once: two jobs are stuck
    with pytest.raises(RuntimeError):
        pool.submit(sum, [1])
    release.set()
    assert stuck[0].result(timeout=10) and stuck[1].result(timeout=10)
    for t in _workers("reads-stuck"):
        t.join(timeout=10)
    assert not _workers("reads-stuck")


def test_a_dropped_executors_threads_end() -> None:
    pool = DaemonThreads(3, "reads-dropped")
    futures = [pool.submit(sum, [i]) for i in range(3)]
    assert [f.result(timeout=10) for f in futures] == [0, 1, 2]
    del pool, futures
    gc.collect()
    for t in _workers("reads-dropped"):
        t.join(timeout=10)
    assert not _workers("reads-dropped")
