"""Bar charts (PNG) from benchmark result JSON files.

One figure per result file, one panel per phase (write, read, ...): median time per system with
min-max whiskers, the subject highlighted and each peer labelled with its ratio to the subject.
Results marked ``"chart": "scaling"`` (``scale``) get a log-log panel per phase instead: each
family of systems (``family@N``) as a line against N.
Usage::

    python -m benchmarks.plot                       # every benchmarks/results/*.json
    python -m benchmarks.plot benchmarks/results/upstream_profile_n1000.json --out-dir /tmp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import FLOOR, RESULTS_DIR, format_value, phase_unit

SUBJECT_COLOR = "#d62728"
FLOOR_COLOR = "#7f7f7f"
PEER_COLOR = "#1f77b4"
LOG_SCALE_SPREAD = 20.0  # use a log axis when the slowest bar is this many times the fastest


def _bar_label(name: str, result: dict, phase: str) -> str:
    subject = result.get("subject", "atlas")
    stats = result["phases"][phase][name]
    unit = phase_unit(result, phase)
    label = format_value(stats["median_s"], unit).strip()
    better, worse = ("less", "more") if unit == "bytes" else ("faster", "slower")
    if name == subject:
        return f"{label}  (subject)"
    if name == FLOOR:
        eff = result.get("efficiency", {}).get(phase)
        return f"{label}  (efficiency {eff:.2f})" if eff is not None else label
    ratio = result.get("ratios", {}).get(phase, {}).get(name)
    if ratio is None:
        return label
    if ratio >= 1.0:
        return f"{label}  ({subject} {ratio:.1f}x {better})"
    return f"{label}  ({subject} {1.0 / ratio:.1f}x {worse})"


def plot_result(result: dict, out_path: Path) -> Path:
    """Draw one result dict to ``out_path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.get("chart") == "scaling":
        return plot_scaling(result, out_path)

    subject = result.get("subject", "atlas")
    phases = [p for p, stats in result["phases"].items() if stats]
    if not phases:
        raise ValueError(f"result {result.get('name')!r} has no timings to plot")
    heights = [max(1.2, 0.45 * len(result["phases"][p]) + 0.8) for p in phases]
    fig, axes = plt.subplots(
        len(phases), 1, figsize=(9, sum(heights) + 1.0), height_ratios=heights, squeeze=False
    )
    for ax, phase in zip(axes[:, 0], phases):
        stats = result["phases"][phase]
        unit = phase_unit(result, phase)
        scale = 2.0**-20 if unit == "bytes" else 1.0  # bytes are drawn in MiB
        names = sorted(stats, key=lambda n: stats[n]["median_s"], reverse=True)
        medians = [stats[n]["median_s"] * scale for n in names]
        lows = [(stats[n]["median_s"] - stats[n]["min_s"]) * scale for n in names]
        highs = [(stats[n]["max_s"] - stats[n]["median_s"]) * scale for n in names]
        colors = [
            SUBJECT_COLOR if n == subject else FLOOR_COLOR if n == FLOOR else PEER_COLOR
            for n in names
        ]
        ax.barh(names, medians, xerr=[lows, highs], color=colors, capsize=3)
        if max(medians) / max(min(medians), 1e-12) > LOG_SCALE_SPREAD:
            ax.set_xscale("log")
        for y, name in enumerate(names):
            ax.annotate(
                _bar_label(name, result, phase),
                xy=(stats[name]["max_s"] * scale, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        what = "MiB" if unit == "bytes" else "time, seconds"
        ax.set_xlabel(f"{phase}: {what} (median of {len(stats[names[0]]['samples_s'])})")
        ax.set_title(phase, loc="left", fontsize=10)
        ax.margins(x=0.35)
    params = result.get("params", {})
    versions = result.get("versions", {})
    title = result.get("name", result.get("workload", "benchmark"))
    if "n" in params:
        title += f"  (N = {params['n']})"
    fig.suptitle(title, fontsize=11)
    footer = ", ".join(
        f"{lib} {versions[lib]}"
        for lib in ("atlas", "zarr", "xarray", "netCDF4", "numpy", "zarrs", "tensorstore",
                    "pyarrow", "lance")
        if versions.get(lib)
    )
    fig.text(0.01, 0.005, footer, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def plot_scaling(result: dict, out_path: Path) -> Path:
    """Each phase's median against N on log-log axes, a line per family of systems; systems are
    named ``family@N`` (``scale``)."""
    import matplotlib.pyplot as plt

    phases = [p for p, stats in result["phases"].items() if stats]
    if not phases:
        raise ValueError(f"result {result.get('name')!r} has no timings to plot")
    columns = 3
    rows = -(-len(phases) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    for ax, phase in zip(axes.flat, phases):
        unit = phase_unit(result, phase)
        series: dict[str, list[tuple[int, float, float, float]]] = {}
        for system, s in result["phases"][phase].items():
            family, n = system.rsplit("@", 1)
            series.setdefault(family, []).append((int(n), s["median_s"], s["min_s"], s["max_s"]))
        for family, points in series.items():
            points.sort()
            ns = [p[0] for p in points]
            medians = [p[1] for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
            color = SUBJECT_COLOR if family == result.get("subject") else None
            ax.errorbar(ns, medians, yerr=errors, marker="o", capsize=3, label=family, color=color)
        ax.set_xscale("log")
        if all(p[1] > 0 for points in series.values() for p in points):
            ax.set_yscale("log")
        ax.set_xlabel("N (datasets)")
        ax.set_ylabel("bytes" if unit == "bytes" else "seconds")
        ax.set_title(phase, loc="left", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(phases):]:
        ax.set_visible(False)
    fig.suptitle(result.get("name", result.get("workload", "benchmark")), fontsize=11)
    versions = result.get("versions", {})
    footer = ", ".join(f"{lib} {versions[lib]}" for lib in ("atlas", "numpy", "pyarrow")
                       if versions.get(lib))
    fig.text(0.01, 0.005, footer, fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_file(json_path: Path, out_dir: Path | None = None) -> Path:
    result = json.loads(json_path.read_text())
    target_dir = out_dir if out_dir is not None else json_path.parent
    return plot_result(result, target_dir / f"{json_path.stem}.png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="result JSON files")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: next to each JSON")
    return parser


def main(argv: list[str] | None = None) -> list[Path]:
    args = build_parser().parse_args(argv)
    files = args.files or sorted(RESULTS_DIR.glob("*.json"))
    if not files:
        raise SystemExit(f"no result files given and none in {RESULTS_DIR}")
    written = []
    for path in files:
        out = plot_file(path, args.out_dir)
        print(f"wrote {out}")
        written.append(out)
    return written


if __name__ == "__main__":
    main()
