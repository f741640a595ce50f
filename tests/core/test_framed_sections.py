"""Framed catalog sections: each column its own zstd frame with its own crc32c, so a query reads
and decompresses only the columns it uses. Round trips, reads of a few columns, damage to one
frame, sections stored the old way (one frame), and tables that must not outlive their files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from core_helpers import reopen

import atlas
from atlas.format import catalog as catalog_format
from atlas.format import columns
from atlas.format.catalog import read_table, write_part
from atlas.format.container import ContainerWriter, parse_footer
from atlas.format.tables import Table

ALL_KINDS = [("k", "i8d", np.arange(0, 3000, 3)), ("a", "i8", np.arange(1000) - 500),
             ("f", "f8", np.arange(1000) * 12345), ("b", "i4", np.arange(1000) - 7),
             ("c", "u4", np.arange(1000)), ("d", "u1", np.arange(1000) % 256),
             ("t", "txt", [f"name{i}" for i in range(1000)]),
             ("u", "txt", ["with\x00nul"] * 1000), ("x", "bin", [bytes([i % 7]) * (i % 5)
                                                                for i in range(1000)])]


def _same(got, want) -> None:
    if isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want)
    else:
        assert list(got) == list(want)


def test_a_framed_section_round_trips_every_kind_and_checks_each_frame():
    stored, spec, decoded = columns.encode_section(ALL_KINDS, framed=True)
    assert all(len(entry) == 5 for entry in spec)
    assert sum(entry[3] for entry in spec) == len(stored)
    assert sum(entry[2] for entry in spec) == decoded
    back = columns.decode_section(stored, spec, 1000, decoded, "here")
    for name, _kind, values in ALL_KINDS:
        _same(back[name], values)
    # each frame is a zstd frame of its column alone, with its own crc32c
    frames = columns.check_spec(spec, decoded, 1000, "here")
    for frame, (name, kind, values) in zip(frames, ALL_KINDS):
        piece = stored[frame.offset : frame.offset + frame.stored]
        assert frame.crc == atlas.codecs.checksum(piece)
        _same(columns.decode_pieces([piece], [frame], 1000, "here"), values)


@pytest.mark.parametrize("framed", [True, False])
@pytest.mark.parametrize("claimed", [999, 1001, 10**9])
def test_a_row_count_the_columns_do_not_hold_is_refused_before_any_column_decodes(framed,
                                                                                   claimed):
    """A key of evenly spaced values is stored in 16 bytes for any row count: a forged count
    is refused from the spec (both for a whole section and for the lazy per-column path),
    not found after the key was expanded to that many values."""
    kinds = [("key", "i8d", np.arange(1000)), ("dead", "u1", np.zeros(1000, np.uint8))]
    stored, spec, decoded = columns.encode_section(kinds, framed=framed)
    assert spec[0][1] == "i8s"
    with pytest.raises(atlas.CorruptionError, match=f"too few or too many for {claimed} rows"):
        columns.check_spec(spec, decoded, claimed, "here")
    with pytest.raises(atlas.CorruptionError, match=f"for {claimed} rows"):
        columns.decode_section(stored, spec, claimed, decoded, "here")
    assert len(columns.decode_section(stored, spec, 1000, decoded, "here")["key"]) == 1000


def test_an_empty_framed_section_round_trips():
    stored, spec, decoded = columns.encode_section([("k", "i8d", []), ("t", "txt", [])],
                                                   framed=True)
    back = columns.decode_section(stored, spec, 0, decoded, "here")
    assert len(back["k"]) == 0 and back["t"] == []


@pytest.mark.parametrize("at", [0, 0.5, -1])
def test_a_flipped_byte_in_one_frame_raises_corruption_error_naming_the_column(at):
    stored, spec, decoded = columns.encode_section(ALL_KINDS, framed=True)
    frames = columns.check_spec(spec, decoded, 1000, "here")
    frame = frames[2]  # "f"
    damaged = bytearray(stored)
    damaged[frame.offset + int(at * frame.stored) % frame.stored] ^= 0x40
    with pytest.raises(atlas.CorruptionError, match="here column 'f'.*checksum"):
        columns.decode_section(bytes(damaged), spec, 1000, decoded, "here")
    # the other frames are intact and decode alone
    other = frames[1]
    _same(columns.decode_pieces([bytes(damaged)[other.offset : other.offset + other.stored]],
                                [other], 1000, "here"), ALL_KINDS[1][2])


@pytest.mark.parametrize("spec_change", [
    lambda s: s[:1] + [s[1][:3]] + s[2:],                       # entries of two shapes
    lambda s: [s[0][:3] + [s[0][3] + 1, s[0][4]]] + s[1:],      # frames not filling the section
    lambda s: [s[0][:3] + [-1, s[0][4]]] + s[1:],               # a negative size
    lambda s: [s[0][:3] + ["12", s[0][4]]] + s[1:],             # not a number
    lambda s: [s[0][:2] + [s[0][2] + 8] + s[0][3:]] + s[1:],    # sizes not adding up
])
def test_a_framed_spec_that_lies_raises_corruption_error(spec_change):
    stored, spec, decoded = columns.encode_section(ALL_KINDS[:3], framed=True)
    with pytest.raises(atlas.CorruptionError, match="here"):
        columns.decode_section(stored, spec_change([list(e) for e in spec]), 1000, decoded,
                               "here")


def _tables():
    n = 500
    return {("datasets",): Table.from_rows("datasets", np.arange(n), np.arange(n) % 50 == 3,
                                           {"name": [f"d{i}" for i in range(n)]}),
            ("array", "temp"): Table.from_rows(
                "array", np.arange(n), np.zeros(n, bool),
                {"slot": np.arange(n), "schema": np.zeros(n, int), "nulls": np.arange(n) % 3,
                 "valid": np.full(n, 6), "min": -np.arange(n), "max": np.arange(n) * 3}),
            ("attr", "k"): Table.from_rows(
                "attr", np.arange(0, n, 2), np.zeros(n // 2, bool),
                {"seq": np.zeros(n // 2, int), "tag": np.full(n // 2, 4, np.uint8),
                 "num": np.zeros(n // 2, int), "data": [b"v%d" % i for i in range(n // 2)]})}


def _write(path, tables) -> tuple[bytes, object]:
    write_part(str(path), tables.items()).release()
    data = path.read_bytes()
    return data, parse_footer(memoryview(data), 0, len(data), None, str(path))


def test_parts_store_framed_sections_and_a_lazy_read_decodes_only_the_columns_used(tmp_path):
    tables = _tables()
    data, footer = _write(tmp_path / "p.cat", tables)
    for sid in tables:
        assert all(len(entry) == 5 for entry in footer.sections[sid].spec)
    reads = []

    def read(offset, length):
        reads.append((offset, length))
        return data[offset : offset + length]

    ref = footer.sections[("array", "temp")]
    frames = {f.name: f for f in columns.check_spec(ref.spec, ref.decoded, ref.rows, "p")}
    table = read_table(footer, ("array", "temp"), read, "p", lazy=True)
    read_so_far = {o - ref.offset for o, _n in reads}
    assert read_so_far == {frames["key"].offset, frames["dead"].offset}
    np.testing.assert_array_equal(table.take("max"), tables[("array", "temp")].columns["max"])
    np.testing.assert_array_equal(table.take("min", np.array([4, 1])), [-4, -1])
    assert {o - ref.offset for o, _n in reads} == read_so_far | {frames["max"].offset,
                                                                 frames["min"].offset}
    # a column looked up is decoded once and kept; every column equals what was written
    for sid, want in tables.items():
        back = read_table(footer, sid, read, "p", lazy=True)
        assert back.key.tolist() == want.key.tolist() and back.dead.tolist() == want.dead.tolist()
        for name in want.columns:
            _same(back.columns[name], want.columns[name])
        # a few texts picked without decoding them all, and the whole column as bytes
        if sid == ("datasets",):
            assert back.take("name", np.array([7, 0])).tolist() == ["d7", "d0"]
        if sid == ("attr", "k"):
            ends, blob = read_table(footer, sid, read, "p", lazy=True).blobs("data")
            assert blob == b"".join(want.columns["data"]) and len(ends) == len(want)


def test_columns_decoded_from_a_part_can_be_written_to(tmp_path):
    data, footer = _write(tmp_path / "p.cat", _tables())
    table = read_table(footer, ("array", "temp"), lambda o, n: data[o : o + n], "p", lazy=True)
    for name in ("nulls", "valid", "min", "slot"):
        column = table.take(name)
        column[0] = 99  # the caller owns it
        assert table.take(name)[0] != 99


def test_a_flipped_byte_in_a_part_frame_raises_corruption_error_naming_the_file(tmp_path):
    path = tmp_path / "p.cat"
    data, footer = _write(path, _tables())
    ref = footer.sections[("array", "temp")]
    frame = {f.name: f for f in columns.check_spec(ref.spec, ref.decoded, ref.rows, "p")}["max"]
    damaged = bytearray(data)
    damaged[ref.offset + frame.offset + frame.stored // 2] ^= 1
    damaged = bytes(damaged)
    # lazily read, the section's checksum is still checked once, so a damaged frame fails the
    # table as a whole (as a section of one frame does), naming the file and the section
    with pytest.raises(atlas.CorruptionError, match=f"{path}.*temp.*checksum"):
        read_table(footer, ("array", "temp"), lambda o, n: damaged[o : o + n], str(path),
                   lazy=True)
    with pytest.raises(atlas.CorruptionError, match=str(path)):  # read whole: the section crc
        read_table(footer, ("array", "temp"), lambda o, n: damaged[o : o + n], str(path))
    # each frame's own checksum still guards the frame it is decoded from
    with pytest.raises(atlas.CorruptionError, match=f"{path}.*'max'.*checksum"):
        columns.decode_pieces([damaged[ref.offset + frame.offset:
                                       ref.offset + frame.offset + frame.stored]],
                              [frame], ref.rows, str(path))


class _OneFrameWriter(ContainerWriter):
    """The container writer before framed sections: every section one zstd frame."""

    def add(self, section_id, columns_, rows, framed=False):
        super().add(section_id, columns_, rows, framed=False)

    def begin(self, section_id, columns_, rows):
        self.add(section_id, columns_, rows)


def test_parts_of_single_frame_sections_still_read(tmp_path, monkeypatch):
    tables = _tables()
    monkeypatch.setattr(catalog_format, "ContainerWriter", _OneFrameWriter)
    data, footer = _write(tmp_path / "p.cat", tables)
    assert all(len(entry) == 3 for entry in footer.sections[("array", "temp")].spec)
    for lazy in (True, False):
        for sid, want in tables.items():
            back = read_table(footer, sid, lambda o, n: data[o : o + n], "p", lazy=lazy)
            assert back.key.tolist() == want.key.tolist()
            for name in want.columns:
                _same(back.columns[name], want.columns[name])


def _collection(store, first, n, rng):
    for i in range(first, first + n):
        ds = store.create_dataset(f"p{i:03d}")
        ds.define_array("temp", "float32", ["z"], [4])
        ds.write_array("temp", [0], (rng.standard_normal(4) * 8 + 15).astype(np.float32))
        ds.define_array("lat", "float64", [], [])
        ds.write_array("lat", [], np.asarray(rng.uniform(-40, 40)))
        ds.set_attribute("platform", ["float", "glider", "ship"][i % 3])
        ds.set_attribute("cycle", i)


def _brute(store, where) -> list[str]:
    out = []
    for name in store.list_datasets():
        view = store.open_dataset(name)
        if where(view.array_stats("temp")["max"], view.array_stats("lat")["min"],
                 view.get_attribute("platform")):
            out.append(name)
    return out


WHERE = "temp.max > 20 and -20 < lat.min < 20 and platform != 'ship'"


def _where(tmax, lat, platform):
    return tmax > 20 and -20 < lat < 20 and platform != "ship"


def test_a_store_of_old_single_frame_parts_and_new_framed_parts_reads_and_verifies(
        store, store_path, rng, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(catalog_format, "ContainerWriter", _OneFrameWriter)
        _collection(store, 0, 30, rng)
        store.flush()
        store.delete_dataset("p004")
        store.flush()
    _collection(store, 30, 20, rng)  # this part is framed
    store.flush()
    parts = sorted((store_path / "catalog").glob("*.cat"))
    shapes = set()
    for path in parts:
        data = path.read_bytes()
        footer = parse_footer(memoryview(data), 0, len(data), None, str(path))
        shapes |= {len(ref.spec[0]) for sid, ref in footer.sections.items()}
    assert shapes == {3, 5}  # both kinds of sections
    handle = reopen(store_path)
    assert handle.select(WHERE) == _brute(handle, _where)
    frame = handle.catalog()
    assert list(frame.index) == handle.list_datasets() and len(frame) == 49
    assert frame["cycle"].tolist() == [int(n[1:]) for n in frame.index]
    assert handle.verify().ok
    handle.compact(grace=0)  # one framed part from here
    again = reopen(store_path)
    assert again.select(WHERE) == _brute(again, _where)
    assert again.catalog().equals(frame)


def _flip_in_frame(store_path, section_id, column) -> str:
    """Flip a byte in the middle of one column's frame of the newest part holding
    ``section_id``; returns the part's path."""
    for path in sorted((store_path / "catalog").glob("*.cat"), reverse=True):
        data = bytearray(path.read_bytes())
        footer = parse_footer(memoryview(bytes(data)), 0, len(data), None, str(path))
        ref = footer.sections.get(section_id)
        if ref is None:
            continue
        frames = columns.check_spec(ref.spec, ref.decoded, ref.rows, "p")
        frame = {f.name: f for f in frames}[column]
        data[ref.offset + frame.offset + frame.stored // 2] ^= 0x10
        path.write_bytes(bytes(data))
        return str(path)
    raise AssertionError(f"no part holds {section_id}")


def test_a_damaged_frame_fails_the_queries_that_read_its_section_and_verify(store, store_path, rng):
    _collection(store, 0, 40, rng)
    store.flush()
    path = _flip_in_frame(store_path, ("array", "temp"), "max")
    handle = reopen(store_path)
    # a query that does not read the damaged section is answered; one that reads it fails,
    # naming the file and the section, whichever of its columns it uses
    assert len(handle.select("lat.min < 100")) == 40
    with pytest.raises(atlas.CorruptionError, match=f"{path}.*temp.*checksum"):
        handle.select("temp.max > 20")
    with pytest.raises(atlas.CorruptionError, match=f"{path}.*temp.*checksum"):
        reopen(store_path).select("temp.min > 20")
    with pytest.raises(atlas.CorruptionError, match=path):
        reopen(store_path).catalog()
    report = reopen(store_path).verify()
    assert not report.ok and any(path in p for p in report.problems)


def test_tables_read_lazily_do_not_outlive_the_parts_this_handle_deletes(store, store_path,
                                                                         rng):
    n = 12_000  # parts beyond the 64 KiB read with the footer: columns come from the file
    for first in range(0, 3 * n, n):  # several parts
        names = [f"p{i:06d}" for i in range(first, first + n)]
        store.write_array_across_stacked("lat", names, rng.uniform(-90, 90, n))
        store.write_array_across_stacked("temp", names, rng.normal(15, 8, (n, 3)).astype("f4"))
        store.flush()
    handle = reopen(store_path)
    assert len(handle.select("lat.min < 100")) == 3 * n  # reads lat's key, dead, min, valid...
    before = sorted((store_path / "catalog").glob("*.cat"))
    assert max(p.stat().st_size for p in before) > 4 * 65536
    handle.compact(grace=0)  # merges the parts and deletes the old ones at once
    assert not set(before) & set((store_path / "catalog").glob("*.cat"))
    # ... but not temp's max, read now from the compacted part
    frame = handle.catalog(columns=["temp.max", "lat.min"])
    fresh = reopen(store_path).catalog(columns=["temp.max", "lat.min"])
    assert frame.equals(fresh) and len(frame) == 3 * n
    assert handle.select("temp.max > 20 and lat.min > 0") == \
        list(fresh.index[(fresh["temp.max"] > 20) & (fresh["lat.min"] > 0)])


def test_catalog_columns_are_writable(store, store_path, rng):
    _collection(store, 0, 10, rng)
    store.flush()
    frame = reopen(store_path).catalog()
    for column in ("temp.nulls", "temp.valid", "temp.max", "cycle"):
        frame.loc["p000", column] = 1
        assert frame.loc["p000", column] == 1


def test_catalog_columns_names_the_columns_it_gives(store, store_path, rng):
    _collection(store, 0, 10, rng)
    store.flush()
    handle = reopen(store_path)
    whole = handle.catalog()
    picked = handle.catalog(columns=["temp.max", "platform", "lat.dtype"])
    assert list(picked.columns) == ["temp.max", "platform", "lat.dtype"]
    assert picked.equals(whole[["temp.max", "platform", "lat.dtype"]])
    with pytest.raises(atlas.QueryError, match="nope"):
        handle.catalog(columns=["nope"])
    with pytest.raises(TypeError):
        handle.catalog(arrays=["temp"], columns=["temp.max"])


@pytest.mark.parametrize("names", [["only"], [""], ["a", "", "bé", "日本", ""],
                                   [f"n{i}" for i in range(100)],
                                   [f"p{i:04d}" for i in range(60)], ["", "", ""]])
def test_a_few_texts_are_picked_from_a_frame_without_decoding_them_all(tmp_path, names,
                                                                       monkeypatch):
    monkeypatch.setattr(catalog_format, "PICK_STEP", 3)  # separators found across steps
    n = len(names)
    table = Table.from_rows("datasets", np.arange(n), np.zeros(n, bool), {"name": names})
    data, footer = _write(tmp_path / "p.cat", {("datasets",): table})
    back = read_table(footer, ("datasets",), lambda o, m: data[o : o + m], "p", lazy=True)
    wanted = np.array([n - 1, 0, n // 2])
    decoded = catalog_format._pick_texts([back.joined_texts("name")], wanted, n, "p")
    assert decoded.tolist() == [names[i] for i in wanted]
    if n > 24:  # few enough rows to pick rather than decode the column
        assert back.take("name", wanted).tolist() == [names[i] for i in wanted]
    with pytest.raises(atlas.CorruptionError, match="texts"):
        catalog_format._pick_texts([back.joined_texts("name")], wanted, n + 1, "p")


def test_a_text_of_one_length_holding_a_separator_is_damage():
    """Texts of one length are cut at multiples of their stride; a separator inside one (the
    column holds more texts than rows) is still refused."""
    joined = memoryview(b"ab\x00c\x00\x00ef")  # 3 rows of width 2, but "c\0" holds a NUL
    picked = catalog_format._pick_texts([joined], np.array([0, 2]), 3, "p")
    assert picked.tolist() == ["ab", "ef"]
    with pytest.raises(atlas.CorruptionError, match="texts"):
        catalog_format._pick_texts([joined], np.array([1]), 3, "p")


@pytest.mark.parametrize("seed", range(40))
def test_texts_are_picked_across_the_parts_they_are_cut_into(seed):
    """A column's frames cut its joined texts anywhere, even inside a text or a character."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    width = int(rng.integers(0, 4))
    texts = ([f"{i:0{width}d}"[-width:] if width else "" for i in range(n)] if seed % 2 else
             ["".join(rng.choice(list("abé日"), int(rng.integers(0, 5)))) for _ in range(n)])
    joined = "\x00".join(texts).encode()
    cuts = sorted(set(rng.integers(0, len(joined) + 1, int(rng.integers(0, 6))).tolist()))
    parts = [memoryview(joined)[a:b] for a, b in zip([0, *cuts], [*cuts, len(joined)])]
    wanted = np.unique(rng.integers(0, n, int(rng.integers(1, n + 1))))
    picked = catalog_format._pick_texts(parts, wanted, n, "p")
    assert picked.tolist() == [texts[i] for i in wanted]


# -- big columns: several frames (pieces) ------------------------------------------------------

@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(columns, "PIECE_BYTES", 700)  # most of ALL_KINDS' columns in pieces


def test_a_big_column_is_stored_in_pieces_and_decodes_whole(small_pieces):
    stored, spec, decoded = columns.encode_section(ALL_KINDS, framed=True)
    names = [entry[0] for entry in spec]
    assert names.count("t") > 5 and names.count("x") > 3 and names.count("f") == 1
    assert all(entry[2] <= 700 for entry in spec if entry[1] in ("txt", "bin"))
    back = columns.decode_section(stored, spec, 1000, decoded, "here")
    for name, _kind, values in ALL_KINDS:
        _same(back[name], values)


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_lazy_table_decodes_its_pieces_on_threads_or_here(tmp_path, small_pieces, prefetch):
    """Prefetched pieces decode on the pool (what is still queued when the column is used is
    done by the caller); the column is the same either way, texts picked across pieces too."""
    n = 3000
    names = [f"p{i:06d}" for i in range(n)]
    table = Table.from_rows("datasets", np.arange(n), np.zeros(n, bool), {"name": names})
    data, footer = _write(tmp_path / "p.cat", {("datasets",): table})
    assert [e[0] for e in footer.sections[("datasets",)].spec].count("name") > 3
    for rounds in range(3):
        back = read_table(footer, ("datasets",), lambda o, m: data[o : o + m], "p", lazy=True)
        if prefetch:
            with ThreadPoolExecutor(1) as pool:
                back.prefetch(["name"], pool.submit)
                wanted = np.array([0, 777, 1500, n - 1])
                assert back.take("name", wanted).tolist() == [names[i] for i in wanted]
        assert back.take("name").tolist() == names


def test_a_flipped_byte_in_one_piece_raises_corruption_error_naming_the_column(tmp_path,
                                                                                small_pieces):
    stored, spec, decoded = columns.encode_section(ALL_KINDS, framed=True)
    frames = columns.check_spec(spec, decoded, 1000, "here")
    second = [f for f in frames if f.name == "t"][1]
    damaged = bytearray(stored)
    damaged[second.offset + second.stored // 2] ^= 0x01
    with pytest.raises(atlas.CorruptionError, match="here column 't'.*checksum"):
        columns.decode_section(bytes(damaged), spec, 1000, decoded, "here")


@pytest.mark.parametrize("spec_change", [
    lambda s: [s[0], s[-1], *s[1:-1]],  # another column between a column's pieces
    lambda s: [s[0][:1] + ["bin"] + s[0][2:], *s[1:]],  # pieces of two kinds
])
def test_pieces_apart_or_of_two_kinds_raise_corruption_error(small_pieces, spec_change):
    stored, spec, decoded = columns.encode_section([ALL_KINDS[6], ALL_KINDS[0]], framed=True)
    assert [e[0] for e in spec][:2] == ["t", "t"]
    with pytest.raises(atlas.CorruptionError, match="here: section spec is damaged"):
        columns.decode_section(stored, spec_change([list(e) for e in spec]), 1000, decoded,
                               "here")


def test_a_column_two_threads_load_at_once_is_loaded_and_kept():
    """Dask's threads read one handle's catalog together: a column that another thread
    loaded while this one was loading it is no KeyError (it was, from `del pending[name]`)."""
    from atlas.format.tables import Columns

    calls = []

    def load(rows):
        calls.append(rows)
        if len(calls) == 1:  # the other thread finishes first, in the middle of this load
            assert list(columns["c"]) == [1, 2]
        return np.array([1, 2])

    columns = Columns({}, {"c": load})
    assert list(columns["c"]) == [1, 2] and len(calls) == 2
    assert "c" not in columns.pending and list(columns["c"]) == [1, 2] and len(calls) == 2
    with pytest.raises(KeyError):
        columns["nope"]
