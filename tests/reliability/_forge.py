"""Forging stores with valid checksums and invalid content (format version 1).

A forger rewrites a store's commit record or one of its segments through the format code
itself, so every checksum is right and only the content lies. When the on-disk format
changes, only this module changes: the tests say what a forged store must do, not how it is
laid out.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from atlas.format.manifest import MANIFEST_KEY, Manifest
from atlas.format.segment import SegmentWriter


def manifest_doc(root: str) -> dict:
    with open(os.path.join(root, MANIFEST_KEY), "rb") as f:
        return Manifest.decode(f.read(), "forge").doc


def write_manifest(root: str, doc: dict) -> None:
    """Commit ``doc`` as the store's manifest (valid magic, version, length and checksum)."""
    data = Manifest(doc).encode()
    with open(os.path.join(root, MANIFEST_KEY), "wb") as f:
        f.write(data)


def forge_manifest(root: str, change: Callable[[dict], Any]) -> None:
    doc = manifest_doc(root)
    change(doc)
    write_manifest(root, doc)


def segment_refs(root: str, array: str) -> list:
    return manifest_doc(root)["segments"][array]


def name_key(root: str, array: str, key: str, size: int | None = None,
             rows: int | None = None) -> None:
    """Make the manifest name ``key`` as the first segment of ``array``."""
    def change(doc):
        ref = doc["segments"][array][0]
        doc["segments"][array][0] = [key, ref[1] if size is None else size,
                                     ref[2] if rows is None else rows]
    forge_manifest(root, change)


def retire_key(root: str, key: str, since: float = 0.0) -> None:
    """Make the manifest list ``key`` as retired (long ago: a compact deletes it)."""
    forge_manifest(root, lambda doc: doc.setdefault("retired", []).append([key, since]))


def forge_chunk(root: str, dataset: str, array: str, stored: bytes, decoded_length: int,
                codec_id: int) -> str:
    """Replace the array's segments by one new segment whose only record is chunk 0 of
    ``dataset``'s ``array`` holding ``stored`` and claiming ``decoded_length`` decoded bytes
    with codec ``codec_id`` (record checksum, index checksum and manifest all valid)."""
    doc = manifest_doc(root)
    slot = doc["datasets"][dataset]["arrays"][array]["slot"]
    key = f"segments/{array}/99999999-{'f' * 32}.seg"
    path = os.path.join(root, *key.split("/"))
    writer = SegmentWriter(path)
    writer.append(slot, 0, stored, decoded_length, b"", codec_id, (0, 1, 0, 0))
    index = writer.finish()
    writer.release()
    doc["segments"][array] = [[key, writer.size, index.rows]]
    write_manifest(root, doc)
    return key


def write_manifest_payload(root: str, payload: bytes) -> None:
    """A manifest whose payload is ``payload`` (any bytes: a decompression bomb, say) under a
    valid header: magic, version, checksum and length all match."""
    from atlas.codecs import checksum
    from atlas.format.manifest import _HEADER, MAGIC, VERSION

    with open(os.path.join(root, MANIFEST_KEY), "wb") as f:
        f.write(_HEADER.pack(MAGIC, VERSION, checksum(payload), len(payload)) + payload)
