"""Commands that write files from a dataset: ``export`` (netCDF) and ``plot`` (PNG)."""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from atlas.cli._common import CommandError, emit, format_value, log, open_store, version_options
from atlas.cli._dates import as_dates, calendar_plan, date_text


def register(sub, common: argparse.ArgumentParser) -> None:
    versions = version_options()
    p = sub.add_parser("export", parents=[common, versions], help="write a dataset to netCDF",
                       description="Write dataset NAME to a netCDF file through xarray.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("out", metavar="OUT.nc")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", parents=[common, versions], help="quicklook PNG of one array",
                       description="A map of a 2-D array (the first 2-D slice of a higher-rank "
                                   "one, or the one picked by --index) or a line plot of a 1-D "
                                   "array, with its coordinates when the dataset has them. "
                                   "Needs matplotlib.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME")
    p.add_argument("array", metavar="ARRAY")
    p.add_argument("-o", "--output", metavar="PNG",
                   help="where to write the image (default: NAME_ARRAY.png)")
    p.add_argument("--index", metavar="I", type=int, nargs="+",
                   help="indices on the leading axes of a rank > 2 array (default: all 0)")
    p.set_defaults(func=cmd_plot)


def _check_out(path: str, force: bool) -> str:
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise CommandError(f"{path} is a folder; give a file name")
    if os.path.exists(path) and not force:
        raise CommandError(f"{path} already exists (use --force to overwrite)")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise CommandError(f"folder {folder} does not exist")
    return path


def cmd_export(args) -> int:
    out = _check_out(args.out, args.force)
    store = open_store(args.store, args=args)
    ds = store.to_xarray(args.name)
    # written next to the target and renamed, so a failure leaves no half-written file
    try:
        fd, tmp = tempfile.mkstemp(suffix=".nc.tmp", dir=os.path.dirname(out))
    except OSError as err:
        raise CommandError(f"cannot write {out}: {err.strerror}") from None
    os.close(fd)
    try:
        try:
            ds.to_netcdf(tmp)
        except (TypeError, ValueError) as err:  # what netCDF cannot hold (a dict attribute)
            raise CommandError(f"cannot export dataset {args.name!r} to netCDF: "
                               f"{' '.join(str(err).split())}") from None
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; OUT is as any new file
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    size = os.path.getsize(out)
    log.info("exported %s from %s to %s (%d bytes)", args.name, store.location, out, size)
    emit(args, {"dataset": args.name, "path": out, "bytes": size},
         f"wrote {out} ({size} bytes)")
    return 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- plot ---------------------------------------------------------------------------------------

def _coordinate(view, dim: str, size: int):
    """The 1-D array named after ``dim``, when the dataset has one of the right length and
    every value of it is a number (a cell at its fill, or NaN, cannot place a mesh)."""
    meta = view.array_meta(dim)
    if meta is None or meta["shape"] != [size] or meta["dtype"] == "string":
        return None
    values = view.read_array(dim)
    fill = meta.get("fill_value")
    if values.dtype.kind == "f" and not np.isfinite(values).all() or (
            fill is not None and values.dtype.kind in "iuf" and (values == fill).any()):
        return None
    with np.errstate(over="ignore"):  # a span no axis lays out (+-1.7e308): the index then
        if values.dtype.kind == "f" and len(values) and not np.isfinite(
                np.float64(values.max()) - np.float64(values.min())):
            return None
    return values


def _at(view, dim: str, size: int, i: int) -> str:
    """The coordinate value at index ``i`` of ``dim`` (the index itself when there is none)."""
    coord = _coordinate(view, dim, size)
    if coord is None:
        return str(i)
    plan = calendar_plan(view, dim)
    return format_value(coord[i] if plan is None else as_dates(coord[i], plan))


def _date_axis(view, dim: str, axis) -> None:
    """Label an axis whose coordinate holds cftime dates (stored as numbers) with dates."""
    plan = calendar_plan(view, dim)
    if plan is not None:
        from matplotlib.ticker import FuncFormatter

        axis.set_major_formatter(FuncFormatter(lambda value, _pos: date_text(value, plan)))


def _masked(values: np.ndarray, fill) -> np.ndarray:
    """Fill-valued cells as NaN (float) or masked (other dtypes), so they are not drawn."""
    if fill is None or values.dtype.kind not in "iuf":
        return values
    if values.dtype.kind == "f":
        out = values.astype(np.float64)
        if not (isinstance(fill, float) and np.isnan(fill)):
            out[values == fill] = np.nan
        return out
    return np.ma.masked_equal(values, fill)


def _label(view, array: str) -> str:
    attrs = view.array_attributes(array)
    label = str(attrs.get("long_name") or attrs.get("standard_name") or array)
    units = attrs.get("units")
    return f"{label} [{units}]" if units else label


def cmd_plot(args) -> int:
    try:
        import matplotlib
    except ImportError as err:
        raise CommandError("plot needs matplotlib: pip install matplotlib") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = _check_out(args.output or f"{args.name}_{args.array}.png", force=True)
    if not os.path.splitext(out)[1]:  # matplotlib would write OUT.png: the name said is that
        out += ".png"
    store = open_store(args.store, args=args)
    view = store.open_dataset(args.name)
    meta = view.array_meta(args.array)
    if meta is None:
        raise CommandError(f"dataset {args.name!r} has no array {args.array!r} "
                           f"(it has: {', '.join(view.list_arrays()) or 'none'})")
    shape, dims = meta["shape"], meta["dimension_names"]
    if meta["dtype"] in ("string", "timestamp_nanoseconds"):
        raise CommandError(f"cannot plot {args.array!r}: its dtype is {meta['dtype']}")
    plan = calendar_plan(view, args.array)
    if plan is not None:
        raise CommandError(f"cannot plot {args.array!r}: it holds dates (calendar "
                           f"{plan['calendar']})")
    if not shape:
        raise CommandError(f"cannot plot {args.array!r}: it is a scalar (0-D)")
    lead = len(shape) - 2 if len(shape) > 2 else 0
    index = list(args.index or [0] * lead)
    if len(index) != lead:
        raise CommandError(f"--index takes {lead} values for {args.array!r} of shape {shape}, "
                           f"got {len(index)}")
    for axis, (i, size) in enumerate(zip(index, shape)):
        if not 0 <= i < size:
            raise CommandError(f"--index {i} is outside 0..{size - 1} on axis {axis} "
                               f"({dims[axis]}) of {args.array!r}")
    window = [1] * lead + shape[lead:]
    values = view.read_array(args.array, index + [0] * (len(shape) - lead), window)
    values = _masked(values.reshape(shape[lead:]), meta.get("fill_value"))

    title = f"{args.name}: {args.array}"
    if lead:
        title += " at " + ", ".join(f"{d}={_at(view, d, shape[a], i)}"
                                    for a, (d, i) in enumerate(zip(dims[:lead], index)))
    try:
        with np.errstate(all="ignore"):  # (matplotlib's overflows on the way to its error)
            _draw(plt, view, args, values, shape, dims, title, out)
    except (ValueError, OverflowError) as err:  # matplotlib's, of values it cannot lay out
        finite = np.ma.masked_invalid(np.ma.asarray(values, dtype=np.float64))
        span = f" (values {finite.min()} .. {finite.max()})" if finite.count() else ""
        raise CommandError(f"cannot plot {args.array!r}{span}: matplotlib says: {err}") from err
    log.info("plotted %s/%s of %s to %s", args.name, args.array, store.location, out)
    emit(args, {"dataset": args.name, "array": args.array, "path": out, "index": index},
         f"wrote {out}")
    return 0


def _draw(plt, view, args, values, shape, dims, title: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5) if len(shape) >= 2 else (8, 3.5),
                           layout="constrained")
    try:
        if values.ndim == 1:
            x = _coordinate(view, dims[0], shape[0])
            ax.plot(np.arange(shape[0]) if x is None else x, values)
            ax.set_xlabel(dims[0])
            if x is not None:
                _date_axis(view, dims[0], ax.xaxis)
            ax.set_ylabel(_label(view, args.array))
        else:
            ydim, xdim = dims[-2], dims[-1]
            y = _coordinate(view, ydim, shape[-2])
            x = _coordinate(view, xdim, shape[-1])
            if x is not None and y is not None:
                mesh = ax.pcolormesh(x, y, values, shading="auto")
                _date_axis(view, xdim, ax.xaxis)
                _date_axis(view, ydim, ax.yaxis)
            else:
                mesh = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest")
            ax.set_xlabel(xdim)
            ax.set_ylabel(ydim)
            fig.colorbar(mesh, ax=ax, label=_label(view, args.array))
        ax.set_title(title)
        fig.savefig(out, dpi=100)
    finally:
        plt.close(fig)
