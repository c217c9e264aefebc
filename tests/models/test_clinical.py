"""ClinicalEncoder: encodings, aliases, errors naming patient/column/value, LVCR unknown, JSON round trip."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mkunet.models.clinical import COLUMNS, LVCR_INDEX, ClinicalEncoder


def _train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3", "P4"],
            "age": [40, 50, 60, 80],
            "sex": ["M", "F", "F", "M"],
            "smoking": ["never", "former", "current", "former"],
            "grade": [1, 2, 3, 2],
            "stage": ["I", "II", "III", "IV"],
            "lvcr": [0.0, 0.01, 0.02, 0.04],
        }
    )


def test_constants():
    assert COLUMNS == ("age", "sex", "smoking", "grade", "stage", "lvcr")
    assert LVCR_INDEX == 5 and COLUMNS[LVCR_INDEX] == "lvcr"


def test_known_encoding():
    enc = ClinicalEncoder().fit(_train())
    out = enc.transform(_train())
    assert out.dtype == np.float32 and out.shape == (4, 6)
    expected = np.array(
        [
            [0.0, 1, 0.0, 0.0, 0.0, 0.0],
            [0.25, 0, 0.5, 0.5, 1 / 3, 0.25],
            [0.5, 0, 1.0, 1.0, 2 / 3, 0.5],
            [1.0, 1, 0.5, 0.5, 1.0, 1.0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert enc.ranges_ == {"age": (40.0, 80.0), "lvcr": (0.0, 0.04)}
    assert enc.lvcr_median_ == pytest.approx(0.015)


def test_aliases():
    enc = ClinicalEncoder().fit(_train())
    df = pd.DataFrame(
        {
            "age": [60.0, 60, 60, 60],
            "sex": ["male", "FEMALE", " m ", "Female"],
            "smoking": ["Never", "ex-smoker", "CURRENT", "non-smoker"],
            "grade": ["G1", "g2", "Grade 3", 2.0],
            "stage": ["IIIA", "Stage IV", "4", "IB"],
        }
    )
    out = enc.transform(df)
    np.testing.assert_allclose(out[:, 1], [1, 0, 1, 0])
    np.testing.assert_allclose(out[:, 2], [0, 0.5, 1, 0])
    np.testing.assert_allclose(out[:, 3], [0, 0.5, 1, 0.5])
    np.testing.assert_allclose(out[:, 4], [2 / 3, 1, 1, 0], atol=1e-6)


@pytest.mark.parametrize(
    "column, value",
    [
        ("sex", "X"),
        ("smoking", "sometimes"),
        ("grade", 4),
        ("grade", "G5"),
        ("stage", "V"),
        ("age", -3),
        ("age", "sixty"),
        ("lvcr", "fast"),
    ],
)
def test_malformed_value_names_patient_column_value(column, value):
    enc = ClinicalEncoder().fit(_train())
    df = _train()
    df[column] = df[column].astype(object)
    df.loc[2, column] = value
    with pytest.raises(ValueError) as info:
        enc.transform(df, impute="median")  # imputation never hides a typo
    message = str(info.value)
    assert "'P3'" in message and f"'{column}'" in message and repr(value) in message


def test_missing_value_raises_unless_imputed():
    enc = ClinicalEncoder().fit(_train())
    df = _train().drop(columns="lvcr")
    df["smoking"] = df["smoking"].astype(object)
    df.loc[1, "smoking"] = None
    df.loc[3, "age"] = np.nan
    with pytest.raises(ValueError, match=r"patient 'P2' column 'smoking'.*patient 'P4' column 'age'.*impute='median'"):
        enc.transform(df)
    with pytest.warns(UserWarning, match="imputed 2"):
        out = enc.transform(df, impute="median")
    assert out[1, 2] == pytest.approx(enc.fill_values_["smoking"]) and out[1, 2] == 0.5  # lower median code
    assert out[3, 0] == pytest.approx((55 - 40) / 40)  # median age 55 y
    with pytest.raises(ValueError, match="impute"):
        enc.transform(df, impute="mean")


def test_unknown_lvcr_is_training_median():
    enc = ClinicalEncoder().fit(_train())
    assert enc.lvcr_unknown_value == pytest.approx(0.015 / 0.04)
    no_column = enc.transform(_train().drop(columns="lvcr"))
    np.testing.assert_allclose(no_column[:, 5], enc.lvcr_unknown_value, rtol=1e-6)
    df = _train()
    df["lvcr"] = [None, 0.02, np.nan, "unknown"]
    out = enc.transform(df)
    np.testing.assert_allclose(
        out[:, 5], [enc.lvcr_unknown_value, 0.5, enc.lvcr_unknown_value, enc.lvcr_unknown_value], rtol=1e-6
    )
    one = enc.encode_one({"age": 60, "sex": "F", "smoking": "current", "grade": 3, "stage": "III"})
    np.testing.assert_allclose(one, [0.5, 0, 1, 1, 2 / 3, enc.lvcr_unknown_value], rtol=1e-6)
    assert one.shape == (6,) and one.dtype == np.float32


def test_clipping_outside_training_range():
    enc = ClinicalEncoder().fit(_train())
    with pytest.warns(UserWarning, match="'old' age=95"):
        out = enc.encode_one(
            {"patient_id": "old", "age": 95, "sex": "M", "smoking": "never", "grade": 1, "stage": "I", "lvcr": -0.001}
        )
    assert out[0] == 1.0 and out[5] == 0.0  # both clipped; -0.001 is within 10 % of the range: no warning for it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode_one({"age": 81, "sex": "M", "smoking": "never", "grade": 1, "stage": "I", "lvcr": 0.041})


def test_json_round_trip():
    enc = ClinicalEncoder().fit(_train())
    state = json.loads(json.dumps(enc.to_dict()))
    clone = ClinicalEncoder.from_dict(state)
    np.testing.assert_array_equal(clone.transform(_train()), enc.transform(_train()))
    assert clone.lvcr_unknown_value == enc.lvcr_unknown_value
    with pytest.raises(ValueError, match="ClinicalEncoder"):
        ClinicalEncoder.from_dict({"type": "Other"})
    broken = dict(state)
    del broken["ranges"]
    with pytest.raises(ValueError, match="incomplete"):
        ClinicalEncoder.from_dict(broken)


def test_fit_and_usage_errors():
    with pytest.raises(ValueError, match="not fitted"):
        ClinicalEncoder().transform(_train())
    with pytest.raises(ValueError, match="'lvcr' column"):
        ClinicalEncoder().fit(_train().drop(columns="lvcr"))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['grade'\]"):
        ClinicalEncoder().fit(_train().drop(columns="grade"))
    df = _train()
    df["lvcr"] = np.nan
    with pytest.raises(ValueError, match="'lvcr' has no usable value"):
        ClinicalEncoder().fit(df)
    single = _train()
    single["age"] = 60
    with pytest.warns(UserWarning, match="single value"):
        enc = ClinicalEncoder().fit(single)
    assert np.all(enc.transform(single)[:, 0] == 0.0)


def test_rows_without_patient_id_are_named_by_row():
    enc = ClinicalEncoder().fit(_train())
    df = _train().drop(columns="patient_id")
    df.loc[1, "sex"] = "U"
    with pytest.raises(ValueError, match=r"patient 'row 1' column 'sex' has value 'U'"):
        enc.transform(df)
