"""``atlas log``, ``atlas tag``, ``atlas expire`` and ``--version``/``--at`` on the read
commands, checked against the Python API."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pytest

import atlas
from atlas.cli import main


@pytest.fixture
def versioned(tmp_path):
    path = tmp_path / "s"
    store = atlas.Atlas.create(path)
    for step in range(3):
        view = store.create_dataset(f"d{step}")
        view.define_array("x", "float64", ["n"], [3])
        view.write_array("x", [0], np.full(3, float(step)))
        store.flush(f"add d{step}")
        time.sleep(0.02)
    store.delete_dataset("d0")
    store.flush("drop d0")
    return path


def test_log_lists_versions_newest_first_as_history_does(versioned, capsys):
    assert main(["log", str(versioned), "--json"]) == 0
    logged = json.loads(capsys.readouterr().out)
    history = atlas.Atlas.open(versioned).history()
    assert [e["version"] for e in logged] == [v.generation for v in history] == [4, 3, 2, 1, 0]
    assert [(e["message"], e["added"], e["deleted"]) for e in logged[:2]] == [
        ("drop d0", 0, 1), ("add d2", 1, 0)]
    assert main(["log", str(versioned), "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["version", "time"] and len(lines) == 3
    assert lines[1].split()[0] == "4" and lines[1].endswith("drop d0")


def test_read_commands_take_version_and_at(versioned, capsys):
    assert main(["ls", str(versioned), "--version", "2"]) == 0
    assert capsys.readouterr().out.split() == ["d0", "d1"]
    when = atlas.Atlas.open(versioned, version=3).history()[0].time + dt.timedelta(
        milliseconds=5)
    assert main(["ls", str(versioned), "--at", when.isoformat()]) == 0
    assert capsys.readouterr().out.split() == ["d0", "d1", "d2"]
    assert main(["show", str(versioned), "d0", "--version", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["variables"]["x"]["stats"]["max"] == 0.0
    assert main(["info", str(versioned), "--version", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"] == 3
    assert main(["catalog", str(versioned), "--version", "2", "--arrays", "x", "--csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["ls", str(versioned), "--version", "9"]) == 1
    assert "no version 9" in capsys.readouterr().err
    assert main(["ls", str(versioned), "--version", "-1"]) == 1  # not taken for a tag name
    assert "no version -1: versions go from 0 to" in capsys.readouterr().err
    assert main(["ls", str(versioned), "--at", "0001-01-01T00:00:00+01:00"]) == 1
    assert "no version at 0001-01-01" in capsys.readouterr().err
    assert main(["ls", str(versioned), "--at", "yesterday"]) == 1
    assert "expected a time in ISO 8601" in capsys.readouterr().err
    assert main(["ls", str(versioned), "--at", "2001-01-01", "--version", "1"]) == 1
    assert "not both" in capsys.readouterr().err


def test_tag_expire_and_the_tagged_version_stays(versioned, tmp_path, capsys):
    assert main(["tag", str(versioned), "two", "--version", "2"]) == 0
    assert capsys.readouterr().out.strip() == "tagged version 2 as two"
    assert main(["tag", str(versioned), "two"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["tag", str(versioned), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"two": 2}
    assert main(["expire", str(versioned), "--older-than", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # and its own commit (5: the data of 4) is kept too, and listed
    assert result["versions_kept"] == [2, 4, 5] and result["versions_removed"] == 3
    assert main(["ls", str(versioned), "--version", "two"]) == 0
    assert capsys.readouterr().out.split() == ["d0", "d1"]
    assert main(["ls", str(versioned), "--version", "1"]) == 1
    assert "expired" in capsys.readouterr().err
    assert main(["tag", str(versioned), "two", "--delete"]) == 0
    capsys.readouterr()
    assert main(["expire", str(versioned), "--keep-last", "0"]) == 1
    assert "--keep-last must be >= 1" in capsys.readouterr().err
    for bad in ("inf", "nan", "-1"):  # (inf reached the API, whose message named older_than)
        assert main(["expire", str(versioned), "--older-than", bad]) == 1
        assert "--older-than must be a number of seconds >= 0" in capsys.readouterr().err
