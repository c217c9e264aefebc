"""Figures of the HTML report, returned as PNG bytes (matplotlib, Agg backend, small images).

Every function returns the PNG file content; :mod:`mkunet.report.html` embeds it as
base64. Units on every axis: days, cm^3, mm, per day.

Image conventions: axial slices are shown in radiological display (array row 0 at
the top, as a viewer shows DICOM rows), with a physical extent in mm so that
anisotropic pixels keep their aspect.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "LUNG_WINDOW",
    "to_png",
    "patient_overview",
    "growth_curve",
    "km_plot",
    "forest_plot",
    "roc_plot",
]

#: Display window (centre, width) in HU for the overlays: the lung window.
LUNG_WINDOW = (-600.0, 1500.0)
_FIELD_MM = 100.0  # edge of the square field of view around the tumour (mm)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def to_png(fig: Any, dpi: int = 80) -> bytes:
    """Render and close a matplotlib figure; returns the PNG bytes."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _centre_slice(mask: np.ndarray | None, fallback: tuple[int, int, int]) -> tuple[int, int, int]:
    if mask is not None and mask.any():
        idx = np.nonzero(mask)
        return tuple(int(round(float(i.mean()))) for i in idx)  # type: ignore[return-value]
    return fallback


def patient_overview(patient_id: str, timepoints: Sequence[Mapping[str, Any]], field_mm: float = _FIELD_MM) -> bytes:
    """Axial overlays of one patient: CT + contour (top row), CT + attention map (bottom row).

    Args:
        patient_id: for the title.
        timepoints: one mapping per scan with ``volume`` (:class:`~mkunet.volume.Volume`),
            ``mask`` (bool (z, y, x)), ``attention`` (float32 (z, y, x) in [0, 1] or None),
            ``label`` (e.g. "T1, day 90") and ``volume_cm3``.
        field_mm: edge of the square field shown around the tumour centroid (mm).

    The slice is the axial slice through the tumour centroid at that scan (the previous
    scan's when the mask is empty; the middle slice when none exists).
    """
    plt = _plt()
    n = max(1, len(timepoints))
    has_att = any(tp.get("attention") is not None for tp in timepoints)
    rows = 2 if has_att else 1
    fig, axes = plt.subplots(rows, n, figsize=(1.9 * n, 2.0 * rows + 0.3), squeeze=False)
    level, width = LUNG_WINDOW
    vmin, vmax = level - width / 2, level + width / 2
    fallback = None
    for j, tp in enumerate(timepoints):
        vol = tp["volume"]
        mask = np.asarray(tp["mask"], bool)
        if fallback is None:
            fallback = tuple(s // 2 for s in vol.shape)
        cz, cy, cx = _centre_slice(mask, fallback)  # type: ignore[arg-type]
        cz = min(max(cz, 0), vol.shape[0] - 1)
        if mask.any():
            fallback = (cz, cy, cx)
        sz, sy, sx = vol.spacing
        hy, hx = int(round(field_mm / 2 / sy)), int(round(field_mm / 2 / sx))
        y0, y1 = max(0, cy - hy), min(vol.shape[1], cy + hy)
        x0, x1 = max(0, cx - hx), min(vol.shape[2], cx + hx)
        img = vol.array[cz, y0:y1, x0:x1]
        m = mask[cz, y0:y1, x0:x1]
        extent = (0.0, (x1 - x0) * sx, (y1 - y0) * sy, 0.0)  # mm, row 0 at the top
        ax = axes[0, j]
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest")
        if m.any():
            ax.contour(
                m.astype(np.float32), levels=[0.5], colors=["#ff3030"], linewidths=1.0, extent=extent, origin="upper"
            )
        vol_txt = f"{tp.get('volume_cm3', 0.0) or 0.0:.2f} cm³" if mask.any() else "no tumour found"
        ax.set_title(f"{tp.get('label', '')}\n{vol_txt}, slice z={cz}", fontsize=7)
        _scale_bar(ax, extent)
        if has_att:
            ax2 = axes[1, j]
            ax2.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest")
            att = tp.get("attention")
            if att is not None:
                im = ax2.imshow(
                    np.asarray(att)[cz, y0:y1, x0:x1],
                    cmap="inferno",
                    vmin=0.0,
                    vmax=1.0,
                    alpha=0.5,
                    extent=extent,
                    interpolation="bilinear",
                )
                if j == n - 1:
                    cb = fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.02)
                    cb.ax.tick_params(labelsize=6)
                    cb.set_label("attention (0-1)", fontsize=6)
            if m.any():
                ax2.contour(
                    m.astype(np.float32),
                    levels=[0.5],
                    colors=["#30c0ff"],
                    linewidths=0.7,
                    extent=extent,
                    origin="upper",
                )
            ax2.set_title("attention (finest gate)", fontsize=7)
            ax2.set_xticks([])
            ax2.set_yticks([])
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{patient_id}: axial CT, lung window W {LUNG_WINDOW[1]:g} / L {LUNG_WINDOW[0]:g} HU, {field_mm:g} mm field",
        fontsize=8,
    )
    fig.tight_layout()
    return to_png(fig, dpi=80)


def _scale_bar(ax: Any, extent: tuple[float, float, float, float], length_mm: float = 20.0) -> None:
    x1, y1 = extent[1], extent[2]
    if x1 < length_mm * 1.5:
        return
    ax.plot([x1 * 0.05, x1 * 0.05 + length_mm], [y1 * 0.93] * 2, color="white", lw=2)
    ax.text(x1 * 0.05, y1 * 0.88, f"{length_mm:g} mm", color="white", fontsize=6)


def growth_curve(
    patient_id: str,
    days: Sequence[float],
    volumes_cm3: Sequence[float],
    lvcr: Mapping[str, Any] | None = None,
    responses: Sequence[str | None] | None = None,
    volume_se_cm3: Sequence[float] | None = None,
) -> bytes:
    """Tumour volume (cm^3, log scale) against days, with the LVCR fit and its 95 % CI band.

    Args:
        days, volumes_cm3: the measurable scans (volume > 0).
        volume_se_cm3: the segmentation SE of each volume (cm^3; NaN where none): drawn as 95 %
            error bars V exp(+-1.96 sigma), sigma = SE / V (log-normal, so they stay positive).
        lvcr: mapping with ``lvcr_per_day``, ``lvcr_ci_low``, ``lvcr_ci_high``,
            ``lvcr_intercept_log_cm3`` and ``vdt_days`` (None: points only).
        responses: response category per scan (annotated next to the points).

    The band shows the lines with the CI-limit slopes pivoting at the mean scan day.
    """
    plt = _plt()
    t = np.asarray(days, float)
    v = np.asarray(volumes_cm3, float)
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    ax.semilogy(t, v, "o", color="#1f4e79", label="segmented volume")
    if volume_se_cm3 is not None:
        sig = np.asarray(volume_se_cm3, float) / v
        if np.isfinite(sig).any():
            sig = np.where(np.isfinite(sig), sig, 0.0)
            err = np.stack([v - v * np.exp(-1.96 * sig), v * np.exp(1.96 * sig) - v])
            ax.errorbar(t, v, yerr=err, fmt="none", ecolor="#1f4e79", elinewidth=0.8, capsize=2)
    title = patient_id
    if lvcr is not None and lvcr.get("lvcr_per_day") is not None and len(t) >= 2:
        slope = float(lvcr["lvcr_per_day"])
        b0 = lvcr.get("lvcr_intercept_log_cm3")
        tt = np.linspace(t.min(), t.max(), 50)
        if b0 is None or not np.isfinite(b0):
            b0 = float(np.mean(np.log(v)) - slope * np.mean(t))
        fit = np.exp(b0 + slope * tt)
        ax.semilogy(tt, fit, "-", color="#c0392b", lw=1.2, label=f"LVCR {slope:.4f} /day")
        lo, hi = lvcr.get("lvcr_ci_low"), lvcr.get("lvcr_ci_high")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            tbar = float(np.mean(t))
            ybar = b0 + slope * tbar
            band = np.stack([np.exp(ybar + s * (tt - tbar)) for s in (lo, hi)])
            ax.fill_between(tt, band.min(0), band.max(0), color="#c0392b", alpha=0.15, label="95% CI of LVCR")
        vdt = lvcr.get("vdt_days")
        if vdt is not None and np.isfinite(vdt):
            title += f": VDT {vdt:.0f} days" if vdt > 0 else f": halving time {-vdt:.0f} days"
    if responses is not None:
        for ti, vi, r in zip(t, v, responses):
            if r:
                ax.annotate(str(r), (ti, vi), textcoords="offset points", xytext=(4, 4), fontsize=6)
    ax.set_xlabel("days since first scan")
    ax.set_ylabel("tumour volume (cm³, log scale)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="best")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    return to_png(fig, dpi=80)


def km_plot(curves: Any, stats: Mapping[str, Any], title: str = "Overall survival by IES group") -> bytes:
    """Kaplan-Meier curves from a stored table, with the log-rank p and the HR in the title.

    Args:
        curves: rows of :meth:`mkunet.analysis.survival.GroupComparison.km_table` for one score (DataFrame with
            ``group``, ``days``, ``survival``, ``ci_low``, ``ci_high``, ``censored``).
        stats: the score's row of ``groups.csv`` (``logrank_p``, ``hr``, ``hr_ci_low``, ``hr_ci_high``).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for label, g in curves.groupby("group", sort=False):
        days, surv = g["days"].to_numpy(float), g["survival"].to_numpy(float)
        (line,) = ax.step(days, surv, where="post", label=str(label))
        ax.fill_between(
            days,
            g["ci_low"].to_numpy(float),
            g["ci_high"].to_numpy(float),
            step="post",
            alpha=0.25,
            color=line.get_color(),
            lw=0,
        )
        cens = g["censored"].to_numpy(float) > 0
        ax.plot(days[cens], surv[cens], "+", ms=8, color=line.get_color())
    ax.set_xlabel("days since first scan")
    ax.set_ylabel("overall survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{title}\nlog-rank p = {float(stats['logrank_p']):.3g}; HR high vs low {float(stats['hr']):.2f} "
        f"(95% CI {float(stats['hr_ci_low']):.2f}-{float(stats['hr_ci_high']):.2f})",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return to_png(fig, dpi=90)


def forest_plot(cox: Any, ph: Any = None) -> bytes:
    """Forest plot of a Cox summary (DataFrame: hr, hr_ci_low, hr_ci_high, p) with Schoenfeld p per covariate."""
    plt = _plt()
    s = cox
    fig, ax = plt.subplots(figsize=(5.6, 0.42 * len(s) + 1.3))
    y = np.arange(len(s))[::-1]
    hr = s["hr"].to_numpy(float)
    lo = s["hr_ci_low"].to_numpy(float)
    hi = s["hr_ci_high"].to_numpy(float)
    ax.errorbar(hr, y, xerr=[hr - lo, hi - hr], fmt="o", color="#1f4e79", capsize=3)
    ax.axvline(1.0, color="k", ls=":", lw=1)
    labels = []
    for name in s.index:
        lab = str(name)
        p = s.loc[name, "p"] if "p" in s.columns else None
        lab += f"  (p={p:.3g}" if p is not None and np.isfinite(p) else "  ("
        if ph is not None and name in ph.index:
            lab += f"; PH p={float(ph.loc[name, 'p']):.2g})"
        else:
            lab += ")"
        labels.append(lab)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("hazard ratio (95% CI), log scale")
    ax.set_title("Multi-factor Cox model (PH p: Schoenfeld test)", fontsize=8)
    fig.tight_layout()
    return to_png(fig, dpi=90)


def roc_plot(curves: Sequence[Mapping[str, Any]], title: str = "PD-L1 positivity") -> bytes:
    """ROC curves; each mapping has ``label``, ``fpr``, ``tpr``, ``auc`` and optional ``ci_low`` / ``ci_high``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    for c in curves:
        lab = f"{c['label']}: AUC {c['auc']:.2f}"
        if c.get("ci_low") is not None and math.isfinite(c["ci_low"]):
            lab += f" ({c['ci_low']:.2f}-{c['ci_high']:.2f})"
        ax.plot(c["fpr"], c["tpr"], lw=1.5, label=lab)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    return to_png(fig, dpi=90)
