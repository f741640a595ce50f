"""Run as a script by test_fork.py: a parent that used a store forks; the child reads through
the inherited handle, writes through a handle of its own, and exits like a normal program.

    python _fork_script.py <location> <options as JSON> <fork|mp-daemon>

Exit status 0 when everything held; the parent kills a child that does not finish in time
(a hang) and exits 3.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time

import numpy as np

import atlas

CHILD_SECONDS = 60.0


def child_work(store, location: str, options: dict) -> None:
    """What a forked worker does: read through the handle it inherited, write its own store."""
    got = store.open_dataset("parent").read_array("a")
    assert np.array_equal(got, np.arange(100.0)), "the child read wrong data"
    with atlas.Atlas.create(location + "-child", **options) as own:
        ds = own.create_dataset("child")
        ds.define_array("a", "float64", ["x"], [100], [10])
        ds.write_array("a", [0], np.arange(100.0) * 2)
    stale = atlas.Atlas.open(location + "-child", **options)
    other = atlas.Atlas.open(location + "-child", **options)
    other.open_dataset("child").set_attribute("k", 1)
    other.flush()
    stale.open_dataset("child").set_attribute("k", 2)
    try:  # conditional commits keep working: the conflict is detected, nothing overwritten
        stale.flush()
    except atlas.ConflictError:
        pass
    else:
        raise AssertionError("a stale commit in the child did not conflict")


def _mp_child(store, location, options):
    child_work(store, location, options)


def main() -> int:
    location, options, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = atlas.Atlas.create(location, **options)
    ds = store.create_dataset("parent")
    ds.define_array("a", "float64", ["x"], [100], [10])
    ds.write_array("a", [0], np.arange(100.0))
    store.flush()
    assert np.array_equal(store.open_dataset("parent").read_array("a"), np.arange(100.0))
    # pending when the child starts: the child's exit must not take its spill files away
    pending = store.create_dataset("pending")
    pending.define_array("a", "float64", ["x"], [100], [10])
    pending.write_array("a", [0], np.arange(100.0) + 1)

    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            try:
                child_work(store, location, options)
            except BaseException as err:  # noqa: BLE001 - reported through the exit status
                print(f"child failed: {err!r}", file=sys.stderr, flush=True)
                os._exit(1)
            sys.exit(0)  # a normal exit: atexit hooks and finalizers run in the child
        deadline = time.monotonic() + CHILD_SECONDS
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                print("child hung", file=sys.stderr, flush=True)
                return 3
            time.sleep(0.05)
        code = os.waitstatus_to_exitcode(status)
    else:  # a daemonic multiprocessing child, as torch DataLoader workers are
        proc = multiprocessing.get_context("fork").Process(
            target=_mp_child, args=(store, location, options), daemon=True)
        proc.start()
        proc.join(CHILD_SECONDS)
        if proc.is_alive():
            proc.kill()
            print("child hung", file=sys.stderr, flush=True)
            return 3
        code = proc.exitcode
    if code != 0:
        print(f"child ended with {code}", file=sys.stderr, flush=True)
        return 1
    store.flush()  # the parent's pending writes are intact
    back = atlas.Atlas.open(location, **options)
    assert back.list_datasets() == ["parent", "pending"], back.list_datasets()
    assert np.array_equal(back.open_dataset("pending").read_array("a"), np.arange(100.0) + 1)
    child = atlas.Atlas.open(location + "-child", **options)
    assert np.array_equal(child.open_dataset("child").read_array("a"), np.arange(100.0) * 2)
    assert back.verify().ok and child.verify().ok
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
