"""mkunet.utils: one missing-value rule, JSON-safe values (NaN -> null), atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mkunet.utils import (
    MISSING_WORDS,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_parquet,
    atomic_write_text,
    is_missing,
    to_jsonable,
)


@pytest.mark.parametrize(
    "value",
    [
        None,
        float("nan"),
        np.float32("nan"),
        np.float64("nan"),
        pd.NA,
        pd.NaT,
        "",
        "  ",
        "NA",
        "n/a",
        "NaN",
        "None",
        "null",
        "Unknown",
        " missing ",
    ],
)
def test_missing_values(value):
    assert is_missing(value)


@pytest.mark.parametrize("value", [0, 0.0, False, "0", "no", "never", "M", 1.5, np.int64(3), float("inf")])
def test_values_that_are_not_missing(value):
    assert not is_missing(value)


def test_missing_words_are_the_documented_list():
    assert MISSING_WORDS == {"", "na", "n/a", "nan", "none", "null", "unknown", "missing"}


def test_to_jsonable_nan_is_null_and_types_are_plain():
    value = {
        1: (np.float32(1.5), np.int64(2), np.bool_(True)),
        "nan": float("nan"),
        "inf": -math.inf,
        "arr": np.array([[1.0, np.nan]]),
        "path": Path("a/b"),
        "other": {"x"},
    }
    out = to_jsonable(value)
    assert out == {"1": [1.5, 2, True], "nan": None, "inf": None, "arr": [[1.0, None]], "path": "a/b", "other": {"x"}}
    assert type(out["1"][1]) is int and type(out["1"][2]) is bool
    json.dumps({k: v for k, v in out.items() if k != "other"}, allow_nan=False)
    with pytest.raises(ValueError, match="set"):
        to_jsonable(value, strict=True)


def test_atomic_writes(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    assert atomic_write_text(target, "é") == target and target.read_text(encoding="utf-8") == "é"
    atomic_write_bytes(target, b"x")
    assert target.read_bytes() == b"x"
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    atomic_write_csv(df, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df.assign(b=["x", np.nan]))
    atomic_write_parquet(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "sub", "t.csv", "t.parquet"]  # no temporaries


def test_finite_or_none():
    from mkunet.utils import finite_or_none

    assert finite_or_none("2.5") == 2.5 and finite_or_none(np.float32(1.0)) == 1.0 and finite_or_none(0) == 0.0
    for bad in (None, float("nan"), float("inf"), "n/a", "", object()):
        assert finite_or_none(bad) is None, bad
