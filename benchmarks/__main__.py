"""Run benchmark workloads: ``python -m benchmarks [WORKLOAD] [options]``.

Without a workload name every registered workload runs in turn with the given options
(``--quick`` for the smoke run of ``make bench``; results then go to ``benchmarks/results/quick``).
A workload that fails is reported at the end and the others still run; the exit status is 1 if
any failed. Workloads are modules with ``main(argv)``; add new ones to ``WORKLOADS``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback

from benchmarks._harness import RESULTS_DIR

WORKLOADS = {
    "upstream": "benchmarks.upstream",
    "ml_batches": "benchmarks.ml_batches",
    "open_scale": "benchmarks.open_scale",
    "cold_start": "benchmarks.cold_start",
    "ingest_memory": "benchmarks.ingest_memory",
    "latency": "benchmarks.latency",
    "wide_files": "benchmarks.wide_files",
    "many_small": "benchmarks.many_small",
    "scale": "benchmarks.scale",
    "query": "benchmarks.query",
    "writers": "benchmarks.writers",
    "versions": "benchmarks.versions",
}
DEFAULT_ARGS = {"upstream": ["--case", "all"]}


def available() -> dict[str, str]:
    """Registered workloads whose module exists (some are written by other issues)."""
    return {name: mod for name, mod in WORKLOADS.items() if importlib.util.find_spec(mod)}


def _with_quick_dir(argv: list[str]) -> list[str]:
    if "--quick" in argv and "--results-dir" not in argv:
        return [*argv, "--results-dir", str(RESULTS_DIR / "quick")]
    return argv


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    workloads = available()
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("workloads:", ", ".join(workloads))
        return
    if argv and not argv[0].startswith("-"):
        workload = argv.pop(0)
        if workload not in workloads:
            raise SystemExit(f"unknown workload {workload!r}; choose from {sorted(workloads)}")
        importlib.import_module(workloads[workload]).main(_with_quick_dir(argv))
        return
    failed: list[str] = []
    elapsed: dict[str, float] = {}
    for workload, module in workloads.items():
        print(f"\n######## {workload} ########", flush=True)
        begin = time.perf_counter()
        try:
            importlib.import_module(module).main(
                _with_quick_dir([*DEFAULT_ARGS.get(workload, []), *argv])
            )
        except (Exception, SystemExit) as err:  # report, then run the remaining workloads
            if isinstance(err, SystemExit) and not err.code:
                pass
            else:
                traceback.print_exc()
                failed.append(workload)
        elapsed[workload] = time.perf_counter() - begin
    print("\n" + ", ".join(f"{w} {s:.0f} s" for w, s in elapsed.items()), flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
