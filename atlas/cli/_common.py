"""What every command shares: opening stores, printing text or JSON, warnings, disk usage."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from atlas.format.keys import ROOT_KEY

log = logging.getLogger("atlas.cli")


class CommandError(Exception):
    """A failure the command line reports as one ``atlas: <message>`` line (exit 1)."""


class CommandFailed(Exception):
    """The command printed its result but must still exit 1 (``verify`` that found damage)."""


def open_store(location: str, *, writable: bool = False, args: Any = None):
    """Open an existing store; read-only unless the command changes it; at the version
    ``args`` asks for (``--version``, ``--at``) when it does."""
    import atlas

    version = None if args is None else version_asked(args)
    with credentials_explained(location):
        return atlas.Atlas.open(location, read_only=not writable, version=version)


def version_options() -> argparse.ArgumentParser:
    """``--version`` and ``--at``, for the commands that read a store."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("versions")
    g.add_argument("--version", dest="version_spec", metavar="N|TAG",
                   help="read version N (see 'atlas log') or the version tagged TAG")
    g.add_argument("--at", metavar="TIME", type=parse_time,
                   help="read the version that was the latest at TIME (ISO 8601; UTC unless "
                        "it names a zone)")
    return p


def parse_time(text: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a time in ISO 8601 (2024-05-01 or 2024-05-01T12:00:00), got {text!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)


def version_asked(args: Any) -> Any:
    """The version ``--version``/``--at`` name: a generation, a tag, a time, or None."""
    spec, when = getattr(args, "version_spec", None), getattr(args, "at", None)
    if spec is not None and when is not None:
        raise CommandError("give --version or --at, not both")
    if spec is not None:  # a number is a generation (a tag of digits is reached by Python)
        return int(spec) if re.fullmatch(r"-?[0-9]+", spec.strip()) else spec
    return when


# what to set when an object store finds no credentials (obstore reads these variables)
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_REGION; for an S3-compatible "
          "server also AWS_ENDPOINT, and AWS_ALLOW_HTTP=true for http://), or "
          "AWS_SKIP_SIGNATURE=true for a public bucket",
    "gs": "GOOGLE_SERVICE_ACCOUNT (the path of a service-account JSON key) or "
          "GOOGLE_APPLICATION_CREDENTIALS",
    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY)",
}
_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "az": "az", "azure": "az", "abfs": "az",
            "abfss": "az", "adl": "az"}
# how obstore says it found none: it asked the cloud's instance-metadata address instead
_NO_CREDENTIALS = ("169.254.169.254", "computemetadata", "account must be specified")


@contextlib.contextmanager
def credentials_explained(location: str):
    """Turn an object store's "no credentials" failure into one line saying what to set."""
    try:
        yield
    except Exception as err:
        kind = _SCHEMES.get(location.split("://", 1)[0].lower()) if "://" in location else None
        text = str(err).lower()
        if kind is None or not any(marker in text for marker in _NO_CREDENTIALS):
            raise
        raise CommandError(f"no credentials for {location}: set {CREDENTIALS[kind]} "
                           "(see docs/cli.md)") from err


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def kept_note(flushed: int) -> str:
    """How an ingest stopped part-way ends its message: what its flushes kept."""
    if flushed:
        verb = "was" if flushed == 1 else "were"
        return (f"; the {plural(flushed, 'dataset')} flushed before {verb} kept (rerun with "
                "--skip-existing to resume)")
    return "; nothing was written to the store"


def warn(message: str, progress=None) -> None:
    """A warning on stderr (above the progress bar, when one is drawn) and in the log, on one
    line: control characters (a file name may hold a newline) are written as escapes."""
    message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
    log.warning(message)
    line = f"atlas: warning: {message}"
    if progress is not None:
        progress.note(line)
    else:
        print(line, file=sys.stderr, flush=True)


# -- output -------------------------------------------------------------------------------------

def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, timestamps, bytes and non-finite floats made strict JSON.

    NaN and the infinities become the strings "NaN", "Infinity", "-Infinity" (strict JSON has
    no spelling for them); timestamps become ISO 8601 strings; bytes their UTF-8 text, or
    where they are not UTF-8 their Python literal (``b'\\xff'``: nothing is replaced).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.dtype != object else \
            [jsonable(v) for v in value.ravel()]
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else np.datetime_as_string(value, unit="auto")
    if isinstance(value, (_dt.datetime, _dt.date)) or _is_cftime(value):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):  # UTF-8 as its text; other bytes as the text output shows them
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def emit(args, data: Any, text: Callable[[], str] | str) -> None:
    """Print the command's result: JSON when ``--json`` was given, else the text rendering."""
    if args.json:
        sys.stdout.write(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
    else:
        out = text() if callable(text) else text
        if out:
            sys.stdout.write(out if out.endswith("\n") else out + "\n")
    sys.stdout.flush()


def format_value(value: Any) -> str:
    """An attribute or statistic value, ncdump-like: strings quoted, numbers plain."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, np.datetime64):
        return "NaT" if np.isnat(value) else np.datetime_as_string(value, unit="auto")
    if _is_cftime(value):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "NaN" if math.isnan(value) else f"{value:.7g}"
    return str(value)


def _is_cftime(value: Any) -> bool:
    return type(value).__module__.startswith("cftime")


def check_new_store_folder(location: str) -> None:
    """CommandError unless a local ``location`` can hold a new store: a file, or a folder
    holding files but no store, is refused (object store locations are not checked)."""
    if "://" in location or not os.path.exists(location):
        return
    where = os.path.abspath(location)
    if not os.path.isdir(location):
        raise CommandError(f"{where} is a file; a store is a folder")
    entries = os.listdir(location)
    if entries and not os.path.exists(os.path.join(location, ROOT_KEY)) and not all(
            _STORE_ENTRY.fullmatch(entry) for entry in entries):
        raise CommandError(f"{where} is a folder that is not an atlas store and not empty; "
                           "refusing to create a store in it")


# what a store holds at its top: in a folder of nothing else, another writer is creating one
_STORE_ENTRY = re.compile(r"\.atlas\.lock|versions|segments|catalog|tags|" +
                          re.escape(ROOT_KEY) + r"(\.[0-9a-f]{32}\.tmp)?")


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned text columns separated by two spaces."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


# -- the store's files --------------------------------------------------------------------------

def disk_usage(location: str) -> dict:
    """Codec, generation and bytes on disk of a store (``Atlas.usage``)."""
    return open_store(location).usage()
