"""Run benchmark workloads: ``python -m benchmarks [WORKLOAD] [options]``.

Without a workload name every registered workload runs with the given options (``--quick`` for a
smoke run). Workloads are modules with ``main(argv)``; add new ones to ``WORKLOADS``.
"""

from __future__ import annotations

import importlib
import sys

WORKLOADS = {"upstream": "benchmarks.upstream"}
DEFAULT_ARGS = {"upstream": ["--case", "all"]}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("workloads:", ", ".join(WORKLOADS))
        return
    if argv and not argv[0].startswith("-"):
        workload = argv.pop(0)
        if workload not in WORKLOADS:
            raise SystemExit(f"unknown workload {workload!r}; choose from {sorted(WORKLOADS)}")
        importlib.import_module(WORKLOADS[workload]).main(argv)
        return
    for workload, module in WORKLOADS.items():
        importlib.import_module(module).main([*DEFAULT_ARGS.get(workload, []), *argv])


if __name__ == "__main__":
    main()
