"""The quality control in the report and the slice viewer: flagged rows marked, the excluded patients listed.

The run is tests/run/test_quality.py's 10-patient oracle cohort, whose patient P03 grows 8-fold in 10 days.
"""

from __future__ import annotations

import json
import re

import pytest

from mkunet.report import write_report
from mkunet.report.viewer import ViewerTimepoint, viewer_payload
from tests.run.test_quality import FLAGGED, make_flagged_cohort, run_flagged


@pytest.fixture(scope="module")
def flagged_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc-report")
    cohort = make_flagged_cohort(root / "cohort")
    result = run_flagged(cohort, root / "run")
    return write_report(result.out_dir, root / "report.html"), result


def test_report_marks_flagged_rows_and_lists_the_excluded(flagged_report):
    path, _ = flagged_report
    text = path.read_text(encoding="utf-8")
    # the run summary says how the quality control was used
    assert re.search(r"2 of 20 scan\(s\) flagged for review; 1 patient\(s\) left out of the statistics", text)
    assert "Mode --qc exclude" in text
    # the excluded section exists and lists the patient with the reason
    section = text.split('id="excluded"', 1)[1].split('id="patients"', 1)[0]
    assert "Excluded from statistics" in text and FLAGGED in section and "doubles every" in section
    # the patient's per-scan table: both scans flagged, visibly, with the reasons
    patient = text.split(f'id="patient-{FLAGGED}"', 1)[1].split('class="patient"', 1)[0]
    assert patient.count('<tr class="qc-review">') == 2
    assert "Quality control: review" in patient and "Left out of the statistics" in patient
    assert "QC: why review" in patient
    other = text.split('id="patient-P00"', 1)[1].split('class="patient"', 1)[0]
    assert "qc-review" not in other and "Quality control: ok. In the statistics." in other


def test_report_loose_ends(flagged_report):
    text = flagged_report[0].read_text(encoding="utf-8")
    assert "DOMAIN" not in text
    assert "LVCR fed to the model: unknown" not in text
    assert "see table 'excluded'" not in text


def test_viewer_of_a_flagged_patient_says_review(flagged_report):
    path, result = flagged_report
    pages = list(path.parent.glob(f"*/{FLAGGED}.html"))
    assert pages, list(path.parent.iterdir())
    page = pages[0].read_text(encoding="utf-8")
    assert '"qc":"review"' in page and "doubles every" in page


def test_viewer_payload_carries_qc():
    import numpy as np

    from mkunet.volume import Volume

    vol = Volume(np.full((4, 8, 8), -800.0, np.float32), spacing=(2.0, 1.0, 1.0))
    mask = np.zeros(vol.shape, bool)
    mask[2, 3:5, 3:5] = True
    p = viewer_payload([ViewerTimepoint(vol, {"GTV": mask}, qc="review", qc_reasons="the heart")])
    assert p["timepoints"][0]["qc"] == "review" and p["timepoints"][0]["qc_reasons"] == "the heart"
    assert json.dumps(p)
