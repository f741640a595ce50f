"""Corruption: flipped or truncated bytes anywhere in any file of a store make the reads that
use them raise CorruptionError naming the file - never wrong data, never a crash - while
verify() lists exactly the damaged file and everything else stays readable. See _corrupt.py for
the oracle. Files are damaged before any handle maps them: truncating a file a live process has
mapped can SIGBUS, which is outside the threat model (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas

from . import _corrupt
from ._harness import context, record

SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """Record what the property test of this module saw, once it is done."""
    yield
    if SEEN:
        record("corruption-hypothesis", examples=sum(SEEN.values()), outcomes=dict(SEEN))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("corruption") / "template"
    _corrupt.build_template(str(root))
    return _corrupt.parse_layout(str(root))


@st.composite
def damages(draw, layout):
    """A truncation one time in four, else a flip in a region of a kind drawn evenly."""
    if draw(st.booleans()) and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(layout.sizes)))
        return ("truncate", key, draw(st.integers(0, layout.sizes[key] - 1)))
    region = draw(st.sampled_from(layout.of_kind(draw(st.sampled_from(layout.kinds())))))
    offset = draw(st.integers(region.start, region.end - 1))
    xor = draw(st.binary(min_size=1, max_size=min(8, layout.sizes[region.key] - offset)).filter(
        lambda b: all(b)).map(bytes))
    return ("flip", region.key, offset, xor)


@settings(max_examples=max(40, settings.default.max_examples))
@given(data=st.data())
def test_damaged_bytes_raise_corruption_naming_the_file_and_nothing_else_changes(
        layout, tmp_path_factory, data):
    damage = data.draw(damages(layout))
    work = tmp_path_factory.getbasetemp() / "corruption-work"
    SEEN[_corrupt.check_damage(layout, str(work), damage)] += 1


def _run_batch_in_subprocess(layout, tmp_path, count: int, seed: int) -> Counter:
    """Damages checked in a separate process, so that a crash would show as its exit status
    instead of taking the test run down; the last damage it logged names the culprit."""
    out = tmp_path / "out.jsonl"
    ctx = context()
    proc = ctx.Process(target=_run_logged, args=(layout.root, str(tmp_path / "work"), count,
                                                 seed, str(out)))
    proc.start()
    proc.join(60 + 2 * count)  # a damage takes well under a second even on a loaded machine
    if proc.is_alive():
        proc.kill()
        proc.join()
    lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    last = lines[-1] if lines else None
    assert proc.exitcode == 0, f"checker process ended with {proc.exitcode}; last line {last}"
    outcomes = Counter(x["outcome"] for x in lines if "outcome" in x)
    assert sum(outcomes.values()) == count
    return outcomes


def _run_logged(template, work, count, seed, out_path):
    with open(out_path, "w") as out:
        sys.stdout = out
        _corrupt.main(template, work, count, seed)


def test_damage_batch_in_a_separate_process_never_crashes_it(layout, tmp_path):
    start = time.monotonic()
    outcomes = _run_batch_in_subprocess(layout, tmp_path, 40, seed=5)
    record("corruption-subprocess", damages=40, outcomes=dict(outcomes),
           seconds=round(time.monotonic() - start, 1))


@pytest.mark.slow
def test_two_thousand_damages_in_a_separate_process(layout, tmp_path):
    start = time.monotonic()
    outcomes = _run_batch_in_subprocess(layout, tmp_path, 2000, seed=6)
    record("corruption-slow", damages=2000, outcomes=dict(outcomes),
           seconds=round(time.monotonic() - start, 1))


def test_oracle_sees_every_region_of_the_template(layout):
    """The template has what the damages must be able to hit: every region of every file kind,
    several files per list, merged files, blocks shared by many datasets and blocks no read
    needs, strings."""
    kinds = set(layout.kinds())
    assert {"root header", "root payload", "part magic", "part footer", "part trailer",
            "segment magic", "live block", "dead block", "segment footer", "segment trailer"} \
        <= kinds
    assert {f"part section {t}" for t in ("datasets", "schemas", "array", "attr", "array_attr")} \
        <= kinds
    assert {f"segment section {t}" for t in ("blocks", "chunks", "partials")} <= kinds
    root = atlas.Atlas.open(layout.root)._root
    assert len(root.parts) >= 2 and max(len(refs) for refs in root.segments.values()) >= 2
    assert root.retired, "the size-tiered merge never ran on the template"
    assert "linked file index" in kinds and any(
        r.kind == "live block" and r.key in {ref.key for ref in root.linked}
        for r in layout.regions), "no merge linked a block that reads use"
    sharing = Counter(need for read, needs in layout.reads.items() if read.kind == "data"
                      for need in needs if need[0] == "block")
    assert max(sharing.values()) >= 4, "no block holds the chunks of several datasets"
    assert any(text.startswith("|O") for read, text in layout.clean.items()
               if read.kind == "data"), "no string array"


def test_deleted_manifest_means_no_store_here(layout, tmp_path):
    """The one damage that is not CorruptionError/FormatError: with the root gone there is no
    store at that location, whatever catalog parts and segments remain."""
    work = tmp_path / "s"
    shutil.copytree(layout.root, work)
    (work / _corrupt.ROOT).unlink()
    with pytest.raises(atlas.StoreNotFoundError, match="manifest"):
        atlas.Atlas.open(work)
