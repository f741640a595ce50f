"""Run as a script by test_bombs.py, in a fresh interpreter so that its peak memory is its own:

    python _bomb_script.py <store> <open|read|verify> [array]

Prints one JSON line: the error raised (or the verify problems) and by how much the process's
peak resident memory grew during the call.
"""

from __future__ import annotations

import json
import sys


def peak() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    root, action = sys.argv[1], sys.argv[2]
    array = sys.argv[3] if len(sys.argv) > 3 else "a"
    import atlas

    store = None if action == "open" else atlas.Atlas.open(root)
    before = peak()
    out: dict = {}
    try:
        if action == "open":
            atlas.Atlas.open(root)
        elif action == "read":
            name = store.list_datasets()[0]
            store.open_dataset(name).read_array(array)
        else:
            out["problems"] = store.verify().problems
    except Exception as err:  # noqa: BLE001 - reported to the test
        out["error"] = type(err).__name__
        out["message"] = str(err)
    out["peak_growth"] = peak() - before
    print(json.dumps(out))


if __name__ == "__main__":
    main()
