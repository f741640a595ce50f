"""Crash tests: a writer process is SIGKILLed at random moments and at chosen points inside
write_array, flush, the size-tiered merge a flush runs, compact and orphan sweeps; after every
kill the store must open, hold exactly the last acknowledged flush or the one in flight
(complete), read back equal to the seeded model, and verify clean.

SIGKILL ends the process, not the machine: written pages stay in the page cache, so these tests
prove the commit protocol's ordering against process crashes, not fsync against power loss.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import atlas

from . import _model, _writer
from ._harness import context, read_log, record, wait_for

PHASES = {"CREATED": "open", "READY": "write", "WRITE": "write", "FLUSH": "flush",
          "MERGE": "merge", "MERGED": "flush", "ACK": "between", "COMPACT": "compact",
          "COMPACTED": "between", "SWEEP": "sweep", "SWEPT": "between"}


class StoreUnderTest:
    """One store, the writer runs against it so far, and the model it must match."""

    def __init__(self, path: Path, seed: int):
        self.path, self.seed = path, seed
        self.created = False
        self.acked = -1  # last batch whose flush was acknowledged, over all runs
        self.ack_digests: dict[int, str] = {}
        self.model = _model.Model()
        self.merges = 0  # flushes that ran the size-tiered merge, over all runs
        self.linking = 0  # the most files a root listed as linked after a merge

    def absorb(self, lines: list[str]) -> str:
        """Take in a run's log; returns the phase it was killed in."""
        phase = "start"
        for line in lines:
            word, *rest = line.split()
            if word == "CREATED":
                self.created = True
            if word == "MERGE":
                self.merges += 1
            if word == "MERGED" and len(rest) > 1:
                self.linking = max(self.linking, int(rest[1]))
            if word == "ACK":
                batch = int(rest[0])
                assert batch == self.acked + 1, line
                self.acked = max(self.acked, batch)
                self.ack_digests[batch] = rest[1]
            phase = PHASES.get(word, phase)
        return phase

    def check(self) -> int:
        """Assert the store is exactly the acknowledged state or the one in flight; returns
        the batch it holds."""
        try:
            store = atlas.Atlas.open(self.path)
        except atlas.StoreNotFoundError:
            assert not self.created, "a created store no longer opens"
            return -1
        self.created = True
        held = _writer.store_batch(store)
        assert held in (self.acked, self.acked + 1), (
            f"store holds batch {held}, the last acknowledged flush was {self.acked}")
        while self.model.batch < held:  # the store never goes back, so neither does the model
            _model.run_batch(self.seed, self.model.batch + 1, self.model)
        expected = _model.snapshot_model(self.model)
        assert _model.snapshot_store(store) == expected
        if held in self.ack_digests:  # what the writer said it committed is what is there
            assert self.ack_digests[held] == _model.digest(expected)
        report = store.verify()
        assert report.ok, report.problems
        # an in-flight flush that landed is what the next writer builds on: it now counts
        self.acked = max(self.acked, held)
        return held


def _trial(sut: StoreUnderTest, rng: np.random.Generator, log: Path, point: str | None,
           max_delay: float) -> tuple[bool, str]:
    """One writer run, killed by a timer (point None) or by itself at a crash point."""
    ctx = context()
    nth = int(rng.integers(1, 8))
    deadline = 3.0 if point else 60.0
    proc = ctx.Process(target=_writer.crash_writer,
                       args=(str(sut.path), sut.seed, str(log), point, nth, deadline))
    proc.start()
    if point is None:
        if rng.random() < 0.1:  # now and then while it opens or creates the store
            time.sleep(float(rng.uniform(0.0, 0.03)))
        else:
            wait_for(log, "READY", proc=proc)
            time.sleep(float(rng.uniform(0.0, max_delay)))
        proc.kill()
    proc.join(120)
    assert proc.exitcode is not None, "writer did not end"
    lines = read_log(log)
    killed = proc.exitcode == -signal.SIGKILL
    assert killed or lines[-1:] == ["END"], f"writer failed: exit {proc.exitcode}, {lines[-3:]}"
    return killed, sut.absorb(lines)


def run_crash_trials(tmp_path: Path, stores: int, timer_kills: int, point_rounds: int,
                     seed: int, max_delay: float = 0.4) -> dict:
    rng = np.random.default_rng(seed)
    phases: Counter = Counter()
    points: Counter = Counter()
    runs = kills = merges = linking = 0
    batches = 0
    for s in range(stores):
        sut = StoreUnderTest(tmp_path / f"store{s}", seed * 1000 + s)
        plan = [None] * timer_kills + [p for p in _writer.CRASH_POINTS] * point_rounds
        rng.shuffle(plan)
        for t, point in enumerate(plan):
            killed, phase = _trial(sut, rng, tmp_path / f"log{s}_{t}", point, max_delay)
            runs += 1
            if killed:
                kills += 1
                phases[phase] += 1
                if point:
                    points[point] += 1
            sut.check()
        batches += sut.acked + 1
        merges += sut.merges
        linking = max(linking, sut.linking)
    return {"runs": runs, "kills": kills, "phases": dict(phases), "crash_points": dict(points),
            "acknowledged_flushes": batches, "merging_flushes": merges,
            "most_linked_files": linking, "lost": 0}


def test_killed_writer_leaves_the_last_acknowledged_flush_or_the_next(tmp_path):
    start = time.monotonic()
    figures = run_crash_trials(tmp_path, stores=2, timer_kills=12, point_rounds=1, seed=1)
    record("crash", seconds=round(time.monotonic() - start, 1), **figures)
    assert figures["kills"] >= 20
    # the kills must have landed inside flushes, merges and compactions, not only between them
    assert figures["phases"].get("flush", 0) + figures["phases"].get("compact", 0) >= 3
    assert figures["phases"].get("merge", 0) >= 1, figures
    assert figures["most_linked_files"] >= 1, "no merge linked a block; kills never met links"


def test_writer_script_killed_as_a_plain_subprocess_leaves_a_sound_store(tmp_path):
    """The same writer as a stand-alone script (no forkserver), killed three times."""
    script = Path(_writer.__file__)
    sut = StoreUnderTest(tmp_path / "store", 77)
    rng = np.random.default_rng(77)
    kills = 0
    for t in range(3):
        log = tmp_path / f"log{t}"
        proc = subprocess.Popen([sys.executable, str(script), str(sut.path), str(sut.seed),
                                 str(log)])
        try:
            wait_for(log, "READY", timeout=60)
            time.sleep(float(rng.uniform(0.05, 0.3)))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        kills += proc.returncode == -signal.SIGKILL
        sut.absorb(read_log(log))
        sut.check()
    assert kills == 3
    assert sut.acked >= 0, "the writer never got a flush acknowledged"


@pytest.mark.slow
def test_five_hundred_kills_lose_nothing(tmp_path):
    start = time.monotonic()
    figures = run_crash_trials(tmp_path, stores=20, timer_kills=22, point_rounds=2, seed=2)
    record("crash-slow", seconds=round(time.monotonic() - start, 1), **figures)
    assert figures["kills"] >= 500
