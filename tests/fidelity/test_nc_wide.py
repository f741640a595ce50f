"""Wide observation files (hundreds of variables, most of them 0-D scalars with attributes, as
ARM, radiosonde and glider files have) come back identical. Their speed is measured by
``benchmarks/wide_files.py``, not here."""

from __future__ import annotations

import numpy as np
import pytest
from fidelity_helpers import FLAVOURS, Var, chars, roundtrip, write_nc


def wide_file(path, flavour, n_scalars=390, n_profiles=9, n_time=50):
    """A wide file: ``n_scalars`` 0-D variables of mixed types, a few profiles, a char array,
    a packed scalar and a time coordinate."""
    dtypes = ("f4", "f8", "i4", "i2", "i1")
    variables = [
        Var("time", "f8", ("time",), np.arange(n_time, dtype="f8"),
            {"units": "seconds since 2024-06-01 00:00:00", "long_name": "time"}),
        Var("site", "S1", ("strlen",), chars([b"SGP C1"], 8)[0], {"long_name": "site"}),
        Var("packed_scalar", "i2", (), np.int16(1234),
            {"scale_factor": np.float32(0.1), "add_offset": np.float32(10.0)},
            fill=np.int16(-9999)),
    ]
    for i in range(n_scalars):
        t = dtypes[i % len(dtypes)]
        variables.append(Var(f"param_{i:03d}", t, (), np.array(i % 100, dtype=t),
                             {"long_name": f"parameter {i}", "units": "1",
                              "valid_min": np.array(0, dtype=t)},
                             fill=np.array(-1, dtype=t) if i % 7 == 0 else None))
    for i in range(n_profiles):
        variables.append(Var(f"profile_{i}", "f4", ("time",),
                             np.linspace(0, i, n_time, dtype="f4"), {"units": "K"},
                             fill=np.float32(-9999.0)))
    return write_nc(path, flavour, {"time": n_time, "strlen": 8}, variables,
                    {"site_id": "sgp", "facility_id": "C1", "history": "created by a test"})


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_wide_files_of_hundreds_of_0d_variables_round_trip(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = wide_file(path, flavour)
    store = roundtrip(path, tmp_path / "store", **kw)
    assert len(store.open_dataset("d").list_arrays()) == 3 + 390 + 9
