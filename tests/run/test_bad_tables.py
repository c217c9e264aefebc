"""Empty (0 bytes) and header-only input tables stop the run with one line naming the file (exit 2), before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mkunet.cli import app
from mkunet.run.inputs import discover_scans, read_clinical, read_lesions, read_outcomes
from tests.run.test_pipeline import make_tiny_cohort

HEADERS = {
    "clinical.csv": "patient_id,age,sex,smoking,grade,stage\n",
    "scans.csv": "patient_id,timepoint,days,image\n",
    "outcomes.csv": "patient_id,os_days,event\n",
    "lesions.csv": "patient_id,lesion_id,x_mm,y_mm,z_mm\n",
}
READERS = {
    "clinical.csv": lambda root: read_clinical(root / "clinical.csv"),
    "scans.csv": lambda root: discover_scans(root),
    "outcomes.csv": lambda root: read_outcomes(root / "outcomes.csv"),
    "lesions.csv": lambda root: read_lesions(root / "lesions.csv"),
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    c = make_tiny_cohort(tmp_path_factory.mktemp("bad"), n_patients=1, n_timepoints=2, dicom=False, shape=(12, 32, 32))
    (c.root / "lesions.csv").write_text("patient_id,lesion_id,x_mm,y_mm,z_mm\nP00,1,0,0,25\n")
    return c


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("content, says", [("", "is empty"), (None, "but no rows")])
def test_reader_names_the_file(tmp_path, cohort, name, content, says):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(cohort.root, root)
    (root / name).write_text(HEADERS[name] if content is None else content)
    with pytest.raises(ValueError, match=says) as err:
        READERS[name](root)
    assert str(root / name) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(HEADERS))
@pytest.mark.parametrize("content", ["", None])
def test_cli_exits_2_before_any_work(tmp_path, cohort, name, content):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(cohort.root, root)
    (root / name).write_text(HEADERS[name] if content is None else content)
    out = tmp_path / "out"
    args = ["run", str(root), "--clinical", str(root / "clinical.csv"), "-o", str(out), "--no-report"]
    args += ["--outcomes", str(root / "outcomes.csv"), "--lesions", str(root / "lesions.csv")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert name in res.output and ("is empty" in res.output or "but no rows" in res.output)
    assert "No columns to parse" not in res.output
    assert not (out / "results.csv").exists() and not (out / "patients").exists()
