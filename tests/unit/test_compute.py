"""The execution layer: where heavy work runs, and that it never changes what is computed."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medimg_core import compute
from medimg_core.errors import Cancelled, ClusterError, ConfigError, DataError


def square_plus(item: int, *, offset: np.ndarray) -> int:
    return item * item + int(offset[item % len(offset)])


def fail_on_three(item: int) -> int:
    if item == 3:
        raise DataError(f"item {item} is bad; fix the input.")
    return item


def where_am_i(item: int) -> tuple[int, str, bool]:
    engine = compute.current()
    return item, engine.scheduler.kind, engine.distributed


def pid_of(item: int) -> int:
    return os.getpid()


# One worker runs the whole module: under xdist its module-scoped fixture (a cluster or
# trained runs) would otherwise be built again on the other worker.
pytestmark = pytest.mark.xdist_group("compute-cluster")


@pytest.fixture(scope="module")
def cluster() -> Iterator[compute.Engine]:
    with compute.running_on(compute.Scheduler(local_workers=2)) as engine:
        yield engine


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, compute.Scheduler()),
        ("", compute.Scheduler()),
        ("  ", compute.Scheduler()),
        ("none", compute.Scheduler()),
        ("local:3", compute.Scheduler(local_workers=3)),
        ("LOCAL:1", compute.Scheduler(local_workers=1)),
        ("tcp://10.0.0.5:8786", compute.Scheduler(address="tcp://10.0.0.5:8786")),
        (
            "tls://scheduler.hospital.org:8786/",
            compute.Scheduler(address="tls://scheduler.hospital.org:8786"),
        ),
        ("dask-head:8786", compute.Scheduler(address="tcp://dask-head:8786")),
        ("tcp://[::1]:8786", compute.Scheduler(address="tcp://[::1]:8786")),
    ],
)
def test_parse_scheduler_accepts(text: str | None, expected: compute.Scheduler) -> None:
    assert compute.parse_scheduler(text) == expected


def test_parse_local_means_one_worker_per_core() -> None:
    spec = compute.parse_scheduler("local")
    assert spec.local_workers == compute.default_workers()
    assert spec.kind == "local"


@pytest.mark.parametrize(
    "text",
    ["local:0", "local:-1", "local:x", "local:9999", "http://x:1", "tcp://", "x:99999", "a b"],
)
def test_parse_scheduler_refuses_with_the_fix(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        compute.parse_scheduler(text)
    message = str(info.value)
    assert repr(text.strip()) in message
    assert "local:" in message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_scheduler_never_crashes(text: str) -> None:
    """Any text is either a scheduler or one ConfigError, never another exception."""
    try:
        spec = compute.parse_scheduler(text)
    except ConfigError:
        return
    assert spec.kind in ("inline", "local", "cluster")
    assert compute.parse_scheduler(str(spec)) == spec


def test_describe_names_where_work_runs() -> None:
    assert compute.Scheduler().describe() == "this process"
    assert "2 worker processes" in compute.Scheduler(local_workers=2).describe()
    assert "tcp://h:1" in compute.Scheduler(address="tcp://h:1").describe()


# --- this process ----------------------------------------------------------------------------


def test_default_is_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compute.SCHEDULER_ENV, raising=False)
    engine = compute.current()
    assert not engine.distributed
    assert engine.describe() == "this process"
    offset = np.array([5, 7])
    assert engine.map(square_plus, [0, 1, 2], shared={"offset": offset}) == [5, 8, 9]


def test_bad_environment_value_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compute.SCHEDULER_ENV, "local:zero")
    with pytest.raises(ConfigError, match="local:N"):
        compute.current()


def test_inline_progress_and_cancel() -> None:
    engine = compute.current()
    seen: list[tuple[int, int]] = []
    engine.map(
        square_plus,
        list(range(4)),
        shared={"offset": np.zeros(1)},
        progress=lambda d, n: seen.append((d, n)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(Cancelled):
        engine.map(square_plus, [1, 2], shared={"offset": np.zeros(1)}, cancelled=lambda: True)


def test_local_pool_keeps_order_and_errors() -> None:
    engine = compute.current()
    items = list(range(23))
    pooled = engine.map(square_plus, items, shared={"offset": np.arange(5)}, workers=2)
    assert pooled == [square_plus(i, offset=np.arange(5)) for i in items]
    with pytest.raises(DataError, match="item 3 is bad"):
        engine.map(fail_on_three, items, workers=2)
    with pytest.raises(ConfigError, match="at least 1"):
        engine.map(fail_on_three, items, workers=0)


class _Unpicklable:
    """A shared input that refuses to be pickled: it can only reach a worker by fork."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("shared inputs were pickled for a task")


def add_shared(item: int, *, box: _Unpicklable) -> int:
    return item + box.value


def test_local_pool_hands_shared_inputs_to_each_worker_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Forked workers inherit the shared inputs: a large table is not pickled once per task.
    monkeypatch.setattr(compute, "pool_forks", lambda: True)
    items = list(range(9))
    out = compute.current().map(add_shared, items, shared={"box": _Unpicklable(10)}, workers=2)
    assert out == [i + 10 for i in items]


def test_chunks_depend_on_the_data_only() -> None:
    assert [list(r) for r in compute.chunks(5, 2)] == [[0, 1], [2, 3], [4]]
    assert compute.chunk_size(10_000) == 157
    assert compute.chunk_size(10**6) == 256
    assert compute.chunk_size(10) == 1
    assert sum(len(r) for r in compute.chunks(1001, compute.chunk_size(1001))) == 1001


def test_running_on_none_keeps_what_is_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compute.SCHEDULER_ENV, raising=False)
    with compute.running_on(None) as engine:
        assert engine is compute.current()
        assert not engine.distributed


def test_unreachable_cluster_is_one_clear_error() -> None:
    with (
        pytest.raises(
            ConfigError, match=r"Could not reach the Dask scheduler at tcp://127\.0\.0\.1:9"
        ),
        compute.running_on("tcp://127.0.0.1:9"),
    ):
        pass


# --- a local cluster of two worker processes -------------------------------------------------


def test_cluster_results_equal_inline(cluster: compute.Engine) -> None:
    assert compute.current() is cluster
    assert cluster.distributed
    assert "2 worker processes" in cluster.describe()
    offset = np.arange(7)
    items = list(range(40))
    inline = compute.Engine().map(square_plus, items, shared={"offset": offset})
    seen: list[int] = []
    remote = cluster.map(
        square_plus, items, shared={"offset": offset}, progress=lambda d, n: seen.append(d)
    )
    assert remote == inline
    assert seen == list(range(1, 41))


def test_cluster_tasks_run_in_worker_processes(cluster: compute.Engine) -> None:
    pids = set(cluster.map(pid_of, list(range(20))))
    assert os.getpid() not in pids


def test_inside_a_worker_the_engine_is_this_process(cluster: compute.Engine) -> None:
    assert cluster.map(where_am_i, [1, 2]) == [(1, "inline", False), (2, "inline", False)]


def test_cluster_error_reaches_the_user_unchanged(cluster: compute.Engine) -> None:
    with pytest.raises(DataError, match="item 3 is bad; fix the input"):
        cluster.map(fail_on_three, list(range(6)))


def test_cluster_imap_bounds_tasks_in_flight(cluster: compute.Engine) -> None:
    results = dict(
        cluster.imap(square_plus, list(range(12)), shared={"offset": np.ones(3)}, max_in_flight=2)
    )
    assert results == {i: i * i + 1 for i in range(12)}


def test_cluster_cancel_stops_the_rest(cluster: compute.Engine) -> None:
    calls = threading.Event()

    def cancelled() -> bool:
        calls.set()
        return True

    with pytest.raises(Cancelled, match="nothing was saved"):
        cluster.map(
            square_plus, list(range(30)), shared={"offset": np.ones(1)}, cancelled=cancelled
        )
    assert calls.is_set()


def test_cluster_inputs_lost_are_sent_again_and_the_task_resubmitted(
    cluster: compute.Engine,
) -> None:
    """A worker that dies takes its copy of the shared inputs; tests/cluster kills one."""
    client = cluster.client
    inputs = compute._SharedInputs(client, {"offset": np.arange(5)})
    first = inputs.futures()["offset"]
    client.cancel([first])  # what the cluster does to data it lost
    again = inputs.futures()["offset"]
    assert again.key != first.key and again.status == "finished"

    def submit() -> object:
        return client.submit(square_plus, 3, offset=inputs.futures()["offset"], pure=False)

    lost = submit()
    client.cancel([lost])
    assert compute._result(lost, submit) == 12


def test_cluster_lost_task_is_one_clear_error(cluster: compute.Engine) -> None:
    future = cluster.client.submit(pid_of, 1, pure=False)
    cluster.client.cancel([future])
    with pytest.raises(ClusterError, match=r"lost the work of task .* run it again"):
        compute._result(future)


def main_module_of_worker(item: int) -> str:
    import sys

    return str(getattr(sys.modules["__main__"], "__file__", ""))


def test_local_cluster_in_a_streamlit_server_starts_fresh_interpreters() -> None:
    """In a Streamlit server __main__ is the app script; spawned workers would run it again."""
    import streamlit  # noqa: F401  (present in a server process)

    with compute.running_on("local:1") as engine:
        assert "1 worker process" in engine.describe()
        assert "(1 worker now)" in engine.describe()
        mains = engine.map(main_module_of_worker, [0, 1])
        assert engine.map(square_plus, [2, 3], shared={"offset": np.zeros(1)}) == [4, 9]
    assert all("app.py" not in main for main in mains)
