"""Markdown tables from the result JSON files, for ``benchmarks/README.md``.

Renders the targets of every result in one table, then per result its phases (median, min, max,
ratio to atlas or floor efficiency), metrics, chart and notes. ``--update-readme`` replaces the
block between the ``results:begin`` / ``results:end`` markers of the README with it.

    python -m benchmarks.report                  # print the Markdown
    python -m benchmarks.report --update-readme
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._harness import (
    BENCHMARKS_DIR,
    FLOOR,
    RESULTS_DIR,
    format_ratio,
    format_value,
    phase_unit,
)

README = BENCHMARKS_DIR / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ORDER = ("upstream_profile", "upstream_sensors", "upstream_gridded", "ml_batches", "open_scale",
         "cold_start", "ingest_memory", "many_small", "scale", "query", "versions", "writers")


def _rank(path: Path) -> tuple[int, str]:
    for i, prefix in enumerate(ORDER):
        if path.stem.startswith(prefix):
            return i, path.stem
    return len(ORDER), path.stem


def load_results(results_dir: Path = RESULTS_DIR, everything: bool = False) -> list[dict]:
    """The result JSONs of the workloads in ``ORDER`` (``everything``: any file with the
    harness schema; files of another schema, e.g. latency's, are always skipped)."""
    results = []
    for path in sorted(results_dir.glob("*.json"), key=_rank):
        if not everything and _rank(path)[0] == len(ORDER):
            continue
        result = json.loads(path.read_text())
        if "phases" in result and "subject" in result:
            result["_path"] = path
            results.append(result)
    return results


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        for t in result.get("targets", []):
            measured = "-" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
            verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            rows.append([f"#{t['issue']}", t["claim"], measured, t["target"], verdict,
                         f"`{t['command']}`"])
    return _table(["issue", "target", "measured", "wanted", "", "reproduce"], rows)


def _ratio_cell(result: dict, phase: str, name: str) -> str:
    subject = result["subject"]
    if name == subject:
        return "subject"
    if name == FLOOR:
        eff = result.get("efficiency", {}).get(phase)
        return f"efficiency {eff:.2f}" if eff is not None else "-"
    ratio = result.get("ratios", {}).get(phase, {}).get(name)
    return format_ratio(ratio) if ratio is not None else "-"


def result_section(result: dict) -> str:
    subject = result["subject"]
    params = result.get("params", {})
    created = result.get("created", "?")
    load = params.get("load_average")
    blocks = [f"### {result['name']}", ""]
    commit = result.get("versions", {}).get("repo_commit")
    blocks.append(f"Run {created}" + (f", load average (1/5/15 min) {load}" if load else "")
                  + (f", repository at {commit}" if commit else "") + ".")
    blocks.append("")
    for phase, stats in result["phases"].items():
        unit = phase_unit(result, phase)
        rows = []
        for name, s in sorted(stats.items(), key=lambda item: item[1]["median_s"]):
            label = f"**{name}**" if name == subject else name
            rows.append([label, format_value(s["median_s"], unit).strip(),
                         format_value(s["min_s"], unit).strip(),
                         format_value(s["max_s"], unit).strip(), len(s["samples_s"]),
                         _ratio_cell(result, phase, name)])
        blocks.append(_table([phase, "median", "min", "max", "n", f"peer / {subject}"], rows))
        blocks.append("")
    for key, value in result.get("metrics", {}).items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        blocks.append(f"- {key}: {shown}")
    for note in result.get("notes", []):
        blocks.append(f"- note: {note}")
    png = result["_path"].with_suffix(".png")
    if png.exists():
        blocks.append("")
        blocks.append(f"![{result['name']}](results/{png.name})")
    blocks.append("")
    return "\n".join(blocks)


def versions_line(results: list[dict]) -> str:
    if not results:
        return ""
    versions = results[0].get("versions", {})
    keys = ("atlas", "python", "numpy", "numba", "zarr", "xarray", "dask", "netCDF4", "libnetcdf",
            "libhdf5", "zstandard", "lz4", "platform", "cpu_count", "repo_commit")
    return ", ".join(f"{k} {versions[k]}" for k in keys if versions.get(k) is not None)


def render(results: list[dict]) -> str:
    parts = ["## Targets of the issues (latest full run)", "", targets_table(results), "",
             f"Library versions: {versions_line(results)}.", "", "## Latest results", ""]
    parts += [result_section(r) for r in results]
    return "\n".join(parts)


def update_readme(markdown: str, readme: Path = README) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--all", action="store_true", help="also results of other workloads")
    args = parser.parse_args(argv)
    markdown = render(load_results(args.results_dir, args.all))
    if args.update_readme:
        update_readme(markdown)
        print(f"updated {README}")
    else:
        print(markdown)


if __name__ == "__main__":
    main()
