"""Tests of mkunet.report: one self-contained HTML file with every section and figure.

The run is the oracle pipeline of tests/test_pipeline.py on a 10-patient NIfTI cohort
with outcomes (so the cohort statistics exist).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from mkunet.report import write_report
from tests.run.test_pipeline import OracleBundle, make_tiny_cohort, run

PNG = b"\x89PNG\r\n\x1a\n"


def build_report(root: Path, *, synthetic: bool = True) -> tuple[Path, object]:
    root.mkdir(parents=True, exist_ok=True)
    cohort = make_tiny_cohort(
        root / "cohort", n_patients=10, n_timepoints=2, dicom=False, seed=3, shape=(12, 32, 32), constant_clinical=True
    )
    result = run(
        cohort,
        root / "run",
        OracleBundle(),
        outcomes=cohort.root / "outcomes.csv",
        synthetic=synthetic,
        n_boot=50,
        cohort_figures=False,
    )
    tables = root / "eval"
    tables.mkdir()
    pd.DataFrame({"model": ["mkunet", "unet3d"], "dice_mean": [0.81, 0.77]}).to_csv(tables / "table1.csv", index=False)
    # from the run folder (what `mkunet run` leaves on disk), not the in-memory CohortRun
    return write_report(result.out_dir, root / "report.html", model_tables=tables), result


def shared_report(tmp_path_factory) -> tuple[Path, object]:
    """Built once per test session (per xdist worker) and shared with tests/test_report_browser.py."""
    from mkunet.run.store import load_run

    root = tmp_path_factory.getbasetemp() / "mkunet-shared-report"
    path = root / "report.html"
    if path.is_file():
        return path, load_run(root / "run")
    return build_report(root)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return shared_report(tmp_path_factory)


def images(text: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    ]


def test_report_has_every_section_and_figure(report):
    path, result = report
    text = path.read_text(encoding="utf-8")
    for anchor in ("banner", "summary", "cohort-summary", "statistics", "model", "errors", "patients"):
        assert f'id="{anchor}"' in text, anchor
    for pid in result.patients.patient_id:
        assert f'id="patient-{pid}"' in text
    for phrase in (
        "Kaplan-Meier by IES group",
        "log-rank p =",
        "Schoenfeld",
        "ROC for PD-L1",
        "imaging-only IES",
        "Circularity",
        "Synthetic data",
        "Not a medical device",
        "table1",
        "LVCR",
        "VDT",
        "cm³",
        "95% CI",
        "/day",
    ):
        assert phrase in text, phrase
    # each patient's LVCR interval gives a growth call, shown in the cohort table and the patient's section
    calls = result.patients["growth"].dropna()
    assert len(calls) and set(calls) <= {"growing", "shrinking", "growth not established"}
    assert "growth (95% CI of LVCR)" in text
    for pid, call in zip(result.patients.patient_id, result.patients.growth):
        if not isinstance(call, str):
            continue
        section = text.split(f'id="patient-{pid}"')[1].split('class="patient"')[0]
        assert call in section, (pid, call)
    imgs = images(text)
    # KM + forest + ROC + per patient (growth curve + overlays)
    assert len(imgs) == 3 + 2 * len(result.patients)
    assert text.count("<img") == len(imgs)
    assert all(b.startswith(PNG) and len(b) > 1000 for b in imgs)
    # self-contained: no script, no external resource
    assert "<script" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#|patient/)', text)  # patient/<id>.html: the slice viewers
    assert "http://" not in text and "https://" not in text
    assert path.stat().st_size < 3_000_000


def test_report_without_outcomes(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=2, n_timepoints=2, dicom=False, shape=(12, 32, 32))
    plain = run(cohort, tmp_path / "run", OracleBundle(), synthetic=False)
    text = write_report(plain).read_text(encoding="utf-8")
    assert "no outcomes table was given" in text
    assert "Synthetic data" not in text and "Not a medical device" in text
    assert len(images(text)) == 2 * 2


def test_report_lists_problems(tmp_path):
    cohort = make_tiny_cohort(tmp_path / "c", n_patients=2, n_timepoints=2, dicom=False, shape=(12, 32, 32))
    (cohort.root / "P01" / "T1" / "image.nii.gz").write_bytes(b"garbage")
    result = run(cohort, tmp_path / "run", OracleBundle())
    text = write_report(result).read_text(encoding="utf-8")
    section = text[text.index('id="errors"') : text.index('id="patients"')]
    assert "P01" in section and "timepoint skipped" in section and "no LVCR" in section


def test_report_draws_the_stored_statistics_and_recomputes_nothing(report, tmp_path):
    """The KM and ROC figures come from the run's km.csv / roc.csv; the report imports no statistics code."""
    import ast
    import shutil

    import mkunet.report.figures as figures_module
    import mkunet.report.html as html_module

    for module in (html_module, figures_module):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("sklearn", "lifelines", "scipy")}, module.__name__
        assert not imported & {
            "mkunet.run.pipeline",
            "mkunet.run.statistics",
            "mkunet.analysis.survival",
            "mkunet.analysis.association",
            "mkunet.analysis.cohort",
            "mkunet.analysis.ies",
            "mkunet.analysis.kinetics",
        }, module.__name__
    path, _ = report
    run_dir = tmp_path / "run"
    shutil.copytree(path.parent / "run", run_dir)
    full = write_report(run_dir, tmp_path / "full.html").read_text(encoding="utf-8")
    for name in ("km.csv", "roc.csv"):
        (run_dir / "cohort" / name).unlink()
    text = write_report(run_dir, tmp_path / "without.html").read_text(encoding="utf-8")
    assert len(images(text)) == len(images(full)) - 2
    assert "No IES groups" in text and "No ROC" in text
    assert 'alt="Kaplan-Meier curves by IES group"' in full and 'alt="Kaplan-Meier' not in text
