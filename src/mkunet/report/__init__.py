"""The HTML report of a cohort run (:func:`write_report`) and its figures (:mod:`mkunet.report.figures`).

The report is one self-contained HTML file: inline CSS, figures embedded as base64
PNG, no script and no external URL (see :mod:`mkunet.report.html` for its sections).
"""

from mkunet.report.html import render_report, write_report

__all__ = ["write_report", "render_report"]
