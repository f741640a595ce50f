"""run_shared: tasks shared between the worker threads and the calling thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from atlas._pools import run_shared, worker_pool
from atlas.core._read import _batches


def test_every_task_runs_once_and_the_caller_takes_part():
    done, runners, lock = [], set(), threading.Lock()

    def run(task):
        time.sleep(0.005)
        with lock:
            done.append(task)
            runners.add(threading.current_thread())

    run_shared(list(range(12)), run)
    assert sorted(done) == list(range(12))
    assert threading.current_thread() in runners


def test_an_error_stops_the_tasks_not_started_and_is_raised():
    started = []

    def run(task):
        started.append(task)
        time.sleep(0.005)
        if task == 2:
            raise KeyError("task 2")

    with pytest.raises(KeyError, match="task 2"):
        run_shared(list(range(40)), run)
    assert 2 in started and len(started) < 40


def test_a_worker_thread_that_shares_tasks_while_every_other_worker_is_busy_finishes():
    pool = worker_pool()
    release = threading.Event()
    blockers = [pool.submit(release.wait, 30) for _ in range(pool._max_workers - 1)]
    done = []
    try:
        # its helpers wait behind the blockers: it does every task itself and cancels them
        outer = pool.submit(run_shared, list(range(8)), done.append)
        outer.result(timeout=20)
    finally:
        release.set()
        for blocker in blockers:
            blocker.result(timeout=20)
    assert sorted(done) == list(range(8))


def test_read_batches_hold_every_block_once_and_start_with_the_biggest():
    sizes = np.array([5, 1 << 20, 300, 1 << 20, 7, 900 << 10, 2])
    batches = _batches(sizes, 4)
    assert sorted(b for batch in batches for b in batch) == list(range(len(sizes)))
    firsts = [batch[0] for batch in batches]
    assert sizes[firsts].tolist() == sorted(sizes.tolist(), reverse=True)[:4]


def test_an_interrupt_while_a_pool_thread_starts_does_not_hang_the_exit(tmp_path):
    """A Ctrl-C that lands while a worker thread starts leaves the thread unregistered with
    concurrent.futures; the interpreter's exit must still end it (it used to wait forever).
    Simulated: the KeyboardInterrupt is raised right after the first atlas thread started."""
    import subprocess
    import sys
    import textwrap

    import atlas

    with atlas.Atlas.create(tmp_path / "store") as store:
        store.write_array_across_stacked("v", [f"d{i}" for i in range(50)],
                                         np.zeros((50, 256, 256), "f4"))
    child = textwrap.dedent(f"""
        import threading
        import atlas

        real = threading.Thread.start

        def start(self):
            real(self)
            if self.name.startswith("atlas-") and not getattr(start, "done", False):
                start.done = True
                raise KeyboardInterrupt

        threading.Thread.start = start
        try:
            atlas.Atlas.open({str(tmp_path / "store")!r}).read_array_across_stacked("v")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interrupted"
