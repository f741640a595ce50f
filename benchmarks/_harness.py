"""Shared timing, table and JSON helpers for the benchmark workloads.

A workload is a module with ``build_parser() -> argparse.ArgumentParser`` and
``run(args) -> dict``. The dict follows one schema so that tables and charts are generic::

    {
      "workload": "upstream", "name": "upstream_profile_n1000", "subject": "atlas",
      "params": {...}, "versions": {...}, "notes": [...],
      "phases": {"read": {"atlas": {"median_s": ..., "samples_s": [...]}, "zarr-stacked": ...}},
      "ratios": {"read": {"zarr-stacked": 12.3, ...}},    # peer median / subject median
      "efficiency": {"read": 0.8},                         # floor median / subject median
      "units": {"peak_rss": "bytes"},     # optional, per phase; default seconds
      "metrics": {"batches_per_s": {...}},                 # optional derived figures
      "targets": [{"issue": 4, "claim": ..., "measured": ..., "target": ..., "met": ...}],
    }

Timing follows ``shared/BENCHMARKS.md``: warm cache (one untimed call first), repeats interleaved
across systems (order rotated every round), median of at least three.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
FLOOR = "floor"
MIN_REPEATS = 3

VERSIONED_MODULES = ("numpy", "numba", "xarray", "dask", "zarr", "netCDF4", "zstandard", "lz4")
# modules without a __version__ attribute, and the distribution that installs them
DISTRIBUTIONS = {"tensorstore": "tensorstore", "zarrs": "zarrs", "lance": "pylance"}


# --- timing -------------------------------------------------------------------------------------


def time_call(fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once after a garbage collection; return (seconds, result)."""
    gc.collect()
    begin = time.perf_counter()
    result = fn()
    return time.perf_counter() - begin, result


def rotated(items: list, shift: int) -> list:
    """``items`` rotated left by ``shift`` (so every system takes its turn going first)."""
    if not items:
        return []
    shift %= len(items)
    return items[shift:] + items[:shift]


def time_interleaved(
    tasks: dict[str, Callable[[], object]],
    repeats: int,
    warmup: bool = True,
    check: Callable[[str, object], None] | None = None,
    before_each: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    self_timed: bool = False,
) -> dict[str, list[float]]:
    """Time every task ``repeats`` times, interleaved, order rotated each round.

    With ``self_timed`` each task returns the seconds to record (e.g. a write loop that leaves out
    data generation) instead of being timed from outside.

    ``warmup`` runs each task once untimed first (warm cache, JIT, imports); ``check`` is called
    with (name, result) of that warm-up run (or of the first timed run without warm-up).
    ``before_each(name)`` runs untimed before every call (e.g. deleting a previous output).
    """
    names = list(tasks)
    samples: dict[str, list[float]] = {name: [] for name in names}
    checked: set[str] = set()
    # everything alive now (imports, stores, inputs) moves to the permanent generation, so that
    # the collection before each call only walks what the calls themselves allocated
    gc.collect()
    gc.freeze()
    try:
        _run_rounds(tasks, names, samples, checked, repeats, warmup, check, before_each,
                    progress, self_timed)
    finally:
        gc.unfreeze()
    return samples


def _run_rounds(tasks, names, samples, checked, repeats, warmup, check, before_each, progress,
                self_timed) -> None:
    if warmup:
        for name in names:
            if before_each:
                before_each(name)
            _, result = time_call(tasks[name])
            if check:
                check(name, result)
            checked.add(name)
            del result
    for round_index in range(repeats):
        for name in rotated(names, round_index):
            if before_each:
                before_each(name)
            seconds, result = time_call(tasks[name])
            if self_timed:
                seconds = float(result)
            samples[name].append(seconds)
            if check and name not in checked:
                check(name, result)
                checked.add(name)
            del result
            if progress:
                progress(f"  {name:<22s} round {round_index + 1}/{repeats}: {seconds:9.4f} s")


class TimedIterator:
    """Wraps an iterator and accumulates the time spent producing its items.

    Used to take data generation out of write timings: the write time of a system is the time
    of its write loop minus ``self.seconds``.
    """

    def __init__(self, items: Iterable):
        self._items = iter(items)
        self.seconds = 0.0
        self.count = 0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        begin = time.perf_counter()
        try:
            item = next(self._items)
        finally:
            self.seconds += time.perf_counter() - begin
        self.count += 1
        return item


def summarize(samples: list[float]) -> dict:
    """Median, min, max and the raw samples (seconds)."""
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "samples_s": list(samples),
    }


def phase_summary(samples: dict[str, list[float]]) -> dict[str, dict]:
    return {name: summarize(values) for name, values in samples.items() if values}


def ratios_to_subject(phase: dict[str, dict], subject: str) -> dict[str, float]:
    """Peer median / subject median for each peer (> 1 means the subject is faster)."""
    if subject not in phase:
        return {}
    base = phase[subject]["median_s"]
    return {
        name: stats["median_s"] / base
        for name, stats in phase.items()
        if name not in (subject, FLOOR) and base > 0
    }


def floor_efficiency(phase: dict[str, dict], subject: str) -> float | None:
    """Floor median / subject median (1.0: the store adds nothing over raw decoding)."""
    if subject not in phase or FLOOR not in phase or phase[subject]["median_s"] <= 0:
        return None
    return phase[FLOOR]["median_s"] / phase[subject]["median_s"]


def finish_result(result: dict) -> dict:
    """Fill ``ratios`` and ``efficiency`` from ``phases`` for the result's subject."""
    subject = result.get("subject", "atlas")
    # the machine is shared: record how busy it was (1, 5, 15 minute load averages)
    result.setdefault("params", {}).setdefault(
        "load_average", [round(x, 2) for x in os.getloadavg()]
    )
    result["ratios"] = {
        phase: ratios_to_subject(stats, subject) for phase, stats in result["phases"].items()
    }
    result["efficiency"] = {
        phase: eff
        for phase, stats in result["phases"].items()
        if (eff := floor_efficiency(stats, subject)) is not None
    }
    return result


# --- environment --------------------------------------------------------------------------------


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit(path: Path) -> str | None:
    """Short commit of the repository, with "+dirty" when tracked files have local changes."""
    commit = _git(path, "rev-parse", "--short", "HEAD")
    if not commit:
        return None
    changes = _git(path, "status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if changes else commit


def library_versions(extra: Iterable[str] = ()) -> dict[str, str | None]:
    """Versions of every compared library, the C libraries under them and the machine."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
    }
    for module_name in (*VERSIONED_MODULES, *extra):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # a missing or broken optional library is recorded, not fatal
            versions[module_name] = None
            continue
        versions[module_name] = getattr(module, "__version__", None) or _distribution_version(
            DISTRIBUTIONS.get(module_name, module_name)
        )
        if module_name == "netCDF4":
            versions["libnetcdf"] = getattr(module, "__netcdf4libversion__", None)
            versions["libhdf5"] = getattr(module, "__hdf5libversion__", None)
    versions["repo_commit"] = _git_commit(BENCHMARKS_DIR.parent)
    return versions


def _distribution_version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


# --- memory -------------------------------------------------------------------------------------


def _proc_status(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """High-water RSS of this process in bytes: ``VmHWM``, else ``ru_maxrss``.

    ``ru_maxrss`` alone is not usable in a child: Linux carries the parent's high-water mark
    across fork + exec. And Linux records ``VmHWM`` only on some events (pages the allocator
    hands back with ``madvise`` are gone without one), so the mark is at least every RSS
    :func:`current_rss` saw."""
    peak = _proc_status("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return max(peak, _largest_rss_seen)


_largest_rss_seen = 0


def current_rss() -> int | None:
    """Resident set size of this process now, in bytes (None off Linux)."""
    global _largest_rss_seen
    rss = _proc_status("VmRSS")
    _largest_rss_seen = max(_largest_rss_seen, rss or 0)
    return rss


# --- scratch space ------------------------------------------------------------------------------


def make_workdir(base: str | None, prefix: str) -> Path:
    """A fresh scratch directory under ``base`` (default: the system temp dir, never the repo)."""
    root = Path(base) if base else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}_", dir=root))
    if BENCHMARKS_DIR.parent in path.resolve().parents:
        raise ValueError(f"scratch directory {path} is inside the repository; use /tmp")
    return path


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def drop_cached(path: Path) -> None:
    """Ask the kernel to drop the cached pages of every file under ``path`` (written out
    first: call ``os.sync()`` before), so that the next measurement does not run beside them;
    a no-op where ``posix_fadvise`` is missing."""
    if not hasattr(os, "posix_fadvise"):
        return
    for file in (p for p in path.rglob("*") if p.is_file()):
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def directory_size(path: Path) -> int:
    """Total bytes of the files under ``path``."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- output -------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:8.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:7.2f} ms"
    return f"{seconds * 1e6:7.1f} us"


def format_bytes(count: float) -> str:
    if abs(count) < 2**20:
        return f"{count / 2**10:8.1f} KiB"
    return f"{count / 2**20:8.1f} MiB"


def format_ratio(ratio: float) -> str:
    """"12.34x", "0.56x"; below 0.1 two significant digits ("0.0041x", not "0.00x")."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def phase_unit(result: dict, phase: str) -> str:
    """"s" (the default) or "bytes": what the samples of ``phase`` measure."""
    return result.get("units", {}).get(phase, "s")


def format_value(value: float, unit: str) -> str:
    return format_bytes(value) if unit == "bytes" else format_seconds(value)


def target(
    issue: int,
    claim: str,
    measured: float | None,
    threshold: float,
    higher_is_better: bool,
    unit: str = "x",
    command: str = "",
) -> dict:
    """One target of the issues, with the measured figure and whether it was met."""
    if measured is None:
        met = None
    else:
        met = measured >= threshold if higher_is_better else measured <= threshold
    sign = ">=" if higher_is_better else "<="
    return {
        "issue": issue,
        "claim": claim,
        "measured": measured,
        "target": f"{sign} {threshold:g}{unit}",
        "unit": unit,
        "met": met,
        "command": command,
    }


def render_targets(targets: list[dict]) -> str:
    rows = []
    for t in targets:
        measured = "-" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        rows.append([f"#{t['issue']} {t['claim']}", measured, t["target"], verdict])
    return render_table(["target", "measured", "wanted", ""], rows)


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with columns padded to fit (first column left aligned)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def render_result(result: dict) -> str:
    """Tables of one result: per phase, median/min/max and the ratio to the subject; then the
    derived metrics and the targets."""
    subject = result.get("subject", "atlas")
    blocks = [f"== {result.get('name', result.get('workload'))} =="]
    for key, value in result.get("params", {}).items():
        blocks.append(f"  {key}: {value}")
    for phase, stats in result["phases"].items():
        unit = phase_unit(result, phase)
        ratios = result.get("ratios", {}).get(phase, {})
        rows = []
        for name, s in sorted(stats.items(), key=lambda item: item[1]["median_s"]):
            if name == subject:
                ratio = "1.00x (subject)"
            elif name == FLOOR:
                eff = result.get("efficiency", {}).get(phase)
                ratio = f"efficiency {eff:.2f}" if eff is not None else "-"
            elif name in ratios:
                ratio = format_ratio(ratios[name])
            else:
                ratio = "-"
            rows.append(
                [
                    name,
                    format_value(s["median_s"], unit),
                    format_value(s["min_s"], unit),
                    format_value(s["max_s"], unit),
                    str(len(s["samples_s"])),
                    ratio,
                ]
            )
        headers = [phase, "median", "min", "max", "n", f"peer/{subject}"]
        blocks.append("")
        blocks.append(render_table(headers, rows))
    metrics = result.get("metrics")
    if metrics:
        blocks.append("")
        for key, value in metrics.items():
            if isinstance(value, dict):
                shown = ", ".join(f"{k} {_short(v)}" for k, v in value.items())
            else:
                shown = _short(value)
            blocks.append(f"{key}: {shown}")
    if result.get("targets"):
        blocks.append("")
        blocks.append(render_targets(result["targets"]))
    for note in result.get("notes", []):
        blocks.append(f"note: {note}")
    return "\n".join(blocks)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_json(result: dict, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``result`` to ``<results_dir>/<name>.json`` and return the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    return path


# --- command line -------------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every workload accepts."""
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="timed rounds (>= 3)")
    parser.add_argument("--quick", action="store_true", help="small smoke run, not for reporting")
    parser.add_argument("--workdir", default=None, help="scratch parent directory (default /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated stores")
    parser.add_argument("--name", default=None, help="result name (default: derived)")
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where the JSON result and chart go (default benchmarks/results, "
        "benchmarks/results/quick with --quick)",
    )
    parser.add_argument("--no-json", action="store_true", help="print only, write no JSON")
    parser.add_argument("--no-plot", action="store_true", help="write no chart")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every timed call")


def check_repeats(args: argparse.Namespace) -> None:
    if args.repeats < MIN_REPEATS and not args.quick:
        raise SystemExit(f"--repeats must be >= {MIN_REPEATS} (medians of fewer are not reported)")


def progress_printer(verbose: bool) -> Callable[[str], None] | None:
    return (lambda message: print(message, flush=True)) if verbose else None


def log(message: str) -> None:
    print(message, flush=True)


def results_dir(args: argparse.Namespace) -> Path:
    """Where results go: ``--results-dir``, else ``results/`` (``results/quick/`` for a quick
    run, so that smoke runs never overwrite the reported figures)."""
    if getattr(args, "results_dir", None):
        return Path(args.results_dir)
    return RESULTS_DIR / "quick" if getattr(args, "quick", False) else RESULTS_DIR


def emit(result: dict, args: argparse.Namespace) -> Path | None:
    """Print the result's tables and (unless ``--no-json``) write its JSON and chart."""
    print(render_result(result), flush=True)
    if args.no_json:
        return None
    path = write_json(result, results_dir(args))
    print(f"wrote {path}", flush=True)
    if not getattr(args, "no_plot", False):
        from benchmarks.plot import plot_file

        print(f"wrote {plot_file(path)}", flush=True)
    return path


def cli(
    build_parser: Callable[[], argparse.ArgumentParser],
    run: Callable[[argparse.Namespace], dict],
    argv: list[str] | None = None,
) -> dict:
    """Parse arguments, run a workload, print its tables and write its JSON."""
    args = build_parser().parse_args(argv)
    check_repeats(args)
    result = run(args)
    emit(result, args)
    return result


def run_child(module: str, kind: str, params: dict) -> dict:
    """Run ``python -m <module> --child {kind, **params}`` from the repository root and return
    the JSON object its last line of output holds (the workloads' fresh-process steps)."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--child", json.dumps({"kind": kind, **params})],
        cwd=BENCHMARKS_DIR.parent, capture_output=True, text=True, timeout=4 * 3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child {params} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

