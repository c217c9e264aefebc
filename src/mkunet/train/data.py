"""Training data: reading a cohort folder, the patient-level split, the case cache and patch sampling.

Accepted cohort layout (what ``mkunet synth --out DIR`` writes; a user's own cohort in the
same layout works too)::

    DIR/scans.csv     one row per scan. Required columns:
                        patient_id   patient identifier (str)
                        image        path of the CT (NIfTI/NRRD file, DICOM folder or .dcm),
                                     relative to DIR or absolute; when empty, the ``dicom``
                                     column is used instead
                        mask         path of the tumour label map (NIfTI/NRRD, non-zero =
                                     tumour) or of a DICOM RTSTRUCT (.dcm)
                      Optional columns:
                        timepoint    0, 1, ... (default: row order within the patient)
                        days         days since the patient's first scan (or scan_date,
                                     YYYY-MM-DD, from which days are computed)
                        dicom        DICOM series folder (used when ``image`` is empty)
                        roi          RTSTRUCT ROI name (when ``mask`` is an RTSTRUCT holding
                                     several ROIs)
    DIR/clinical.csv  one row per patient: patient_id, age (years), sex (M|F),
                      smoking (never|former|current), grade (1|2|3), stage (I|II|III|IV).
                      Optional: only needed for models with clinical input.

The LVCR of each patient (column 6 of the clinical vector) is computed from the
ground-truth mask volumes across timepoints by the one LVCR definition: mesh volumes
(:func:`mkunet.analysis.kinetics.mask_volume_cm3`) and :func:`mkunet.analysis.kinetics.lvcr` (interval weights),
as :func:`mkunet.analysis.kinetics.lvcr_from_masks` and inference do, exactly what a user with
annotated serial scans can compute;
patients with a single scan get "LVCR unknown" (the encoder's training median).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mkunet.utils import atomic_write_text
from mkunet.volume import Volume

__all__ = [
    "ScanRecord",
    "PreparedCase",
    "read_scans",
    "read_clinical",
    "patient_lvcr",
    "split_patients",
    "load_scan",
    "PatchDataset",
    "sample_patch",
    "Background",
    "read_backgrounds",
    "background_folds",
    "unseen_model",
    "IGNORE_VALUE",
]

IGNORE_VALUE = 2
"""Value of ignored voxels in a training patch's label (the loss gets weight 0 there)."""

CLINICAL_COLUMNS = ("age", "sex", "smoking", "grade", "stage")


@dataclass(frozen=True)
class ScanRecord:
    """One row of ``scans.csv``: where the CT and its tumour mask are, and when it was taken."""

    patient_id: str
    timepoint: int
    days: float | None
    image: Path
    mask: Path
    roi: str | None = None

    @property
    def key(self) -> str:
        """``"<patient_id>/T<timepoint>"``: a unique name of the scan."""
        return f"{self.patient_id}/T{self.timepoint}"


@dataclass
class PreparedCase:
    """A scan resampled to the training spacing and preprocessed, cached in memory.

    Attributes:
        record: the scan.
        channels: float32 (C, z, y, x) preprocessed input at the target spacing.
        label: bool (z, y, x) tumour mask at the target spacing.
        clinical: float32 (6,) encoded clinical vector, or None.
        foreground: flat indices (int64) of the tumour voxels of ``label``.
        lvcr: the patient's LVCR (/day) used in the clinical vector, or None.
        lung: flat indices (int64) of non-tumour voxels of the lung region
            (:func:`mkunet.segmentation.lung.lung_region`; every 4th one), where the hard negatives are:
            vessels, pleura, dense lung. For real-background cases, the lungs and a 25 mm
            shell around them (heart, hilum, vessels, diaphragm, chest wall).
        ignore: bool (z, y, x) voxels the loss skips (real tumours, unknown regions of a
            real background), or None.
        background: the real background's name, or None for a cohort scan.
    """

    record: ScanRecord
    channels: np.ndarray
    label: np.ndarray
    clinical: np.ndarray | None = None
    foreground: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lvcr: float | None = None
    lung: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ignore: np.ndarray | None = None
    background: str | None = None


@dataclass(frozen=True)
class Background:
    """A real CT used as anatomy for inserted tumours (:mod:`mkunet.synth.insert`).

    Attributes:
        name: unique name (the unit of leave-one-background-out splitting).
        image: the CT (NIfTI/NRRD file or DICOM folder).
        ignore: mask of voxels never trained as background (real tumours, unknown regions;
            non-zero = ignore), or None.
        insert: False: no tumour is inserted (a tumour-free negative, e.g. a scan that is
            not a chest).
    """

    name: str
    image: Path
    ignore: Path | None = None
    insert: bool = True


def read_backgrounds(source: str | Path | Sequence[str | Path]) -> list[Background]:
    """Real backgrounds from a folder with ``backgrounds.csv``, that CSV file itself, or CT file(s).

    ``backgrounds.csv`` columns: ``name``, ``image`` (relative to the CSV's folder or absolute);
    optional ``ignore`` (mask path; non-zero = ignore) and ``insert`` (1/0, default 1). A list
    of image paths gives backgrounds named after the files, with no ignore mask.

    Raises:
        FileNotFoundError: the folder, CSV or an image is missing.
        ValueError: a column is missing, or a name is given twice.
    """
    if isinstance(source, (list, tuple)):
        out = []
        for item in source:
            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"Real background '{path}' does not exist.")
            name = path.name.split(".")[0]
            out.append(Background(name, path))
        names = [b.name for b in out]
        if len(set(names)) != len(names):
            raise ValueError(f"Real backgrounds {names} repeat a name; give a backgrounds.csv with unique names.")
        return out
    path = Path(source)  # type: ignore[arg-type]
    if path.is_file() and path.suffix.lower() != ".csv":  # one CT file
        return read_backgrounds([path])
    csv_path = path / "backgrounds.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"No backgrounds table at '{csv_path}': --real-backgrounds takes a folder with backgrounds.csv "
            "(name, image[, ignore, insert]), that CSV, or a list of CT files."
        )
    table = pd.read_csv(csv_path, dtype={"name": str})
    missing = [c for c in ("name", "image") if c not in table.columns]
    if missing:
        raise ValueError(f"'{csv_path}' lacks column(s) {missing}; found {list(table.columns)}.")
    if table["name"].duplicated().any():
        raise ValueError(
            f"'{csv_path}' repeats background name(s) {table.loc[table['name'].duplicated(), 'name'].tolist()}."
        )
    base = csv_path.parent
    out = []
    for idx, row in table.iterrows():
        line = int(idx) + 2  # type: ignore[call-overload]
        image = _resolve(base, row["image"], "image", line)
        if image is None or not image.exists():
            raise FileNotFoundError(f"'{csv_path}' line {line}: image {row['image']!r} does not exist.")
        ignore = _resolve(base, row.get("ignore"), "ignore", line) if "ignore" in table.columns else None
        if ignore is not None and not ignore.exists():
            raise FileNotFoundError(f"'{csv_path}' line {line}: ignore mask '{ignore}' does not exist.")
        insert = True
        if "insert" in table.columns and pd.notna(row["insert"]):
            insert = bool(int(row["insert"]))
        out.append(Background(str(row["name"]), image, ignore, insert))
    return out


def background_folds(names: Sequence[str], groups: Sequence[Sequence[str]]) -> list[dict[str, list[str]]]:
    """Grouped leave-one-background-out folds: fold k scores group k, trains on every other group.

    Args:
        names: every background.
        groups: a partition of ``names`` (each name in exactly one group; 2 or more groups).

    Returns:
        one ``{"train": [...], "score": [...]}`` per group (sorted lists): a background is
        scored only by the fold whose training never saw it.

    Raises:
        ValueError: the groups do not partition ``names`` (a name missing, repeated or unknown).
    """
    all_names = sorted(set(str(n) for n in names))
    seen: list[str] = [str(n) for g in groups for n in g]
    if len(groups) < 2:
        raise ValueError(f"Give at least 2 groups of backgrounds, got {len(groups)}.")
    dup = sorted({n for n in seen if seen.count(n) > 1})
    unknown = sorted(set(seen) - set(all_names))
    missing = sorted(set(all_names) - set(seen))
    if dup or unknown or missing:
        raise ValueError(
            f"The groups must partition the backgrounds {all_names}: repeated {dup}, unknown {unknown}, "
            f"missing {missing}."
        )
    folds = []
    for k, group in enumerate(groups):
        score = sorted(str(n) for n in group)
        train = sorted(str(n) for j, g in enumerate(groups) if j != k for n in g)
        folds.append({"train": train, "score": score})
    return folds


def unseen_model(background: str, trained_on: dict[str, Sequence[str]]) -> str:
    """The first model (in ``trained_on``'s order) whose training never saw ``background``.

    Args:
        background: the name of the scan's background.
        trained_on: model name -> the backgrounds it was trained on (a bundle's
            ``metadata["real_backgrounds"]``).

    Raises:
        ValueError: every model saw the background (scoring it would leak).
    """
    for name, seen in trained_on.items():
        if str(background) not in {str(b) for b in seen}:
            return name
    raise ValueError(
        f"Every model was trained on background {background!r} ({trained_on}); scoring it would leak. "
        "Train a fold without it (leave-one-background-out)."
    )


def _resolve(base: Path, value: Any, column: str, row: int) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    path = Path(str(value).strip())
    return path if path.is_absolute() else base / path


def read_scans(data_dir: str | Path) -> list[ScanRecord]:
    """Read ``DIR/scans.csv`` (layout in the module docstring) into scan records.

    Raises:
        FileNotFoundError: the folder, ``scans.csv`` or a referenced file is missing.
        ValueError: a required column is missing or a row is malformed (the message names
            the row and column).
    """
    data_dir = Path(data_dir)
    path = data_dir / "scans.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"No scans table at '{path}': a training folder needs scans.csv with columns "
            "patient_id, image, mask (see `mkunet train --help`; `mkunet synth --out DIR` writes one)."
        )
    table = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in ("patient_id", "mask") if c not in table.columns]
    if "image" not in table.columns and "dicom" not in table.columns:
        missing.append("image")
    if missing:
        raise ValueError(f"'{path}' lacks column(s) {missing}; found {list(table.columns)}.")
    records: list[ScanRecord] = []
    for pid, group in table.groupby("patient_id", sort=True):
        group = group.sort_values("timepoint") if "timepoint" in group.columns else group
        first_date = None
        for k, (idx, row) in enumerate(group.iterrows()):
            line = int(idx) + 2  # header is line 1
            image = _resolve(data_dir, row.get("image"), "image", line) if "image" in row else None
            if image is None and "dicom" in row:
                image = _resolve(data_dir, row.get("dicom"), "dicom", line)
            if image is None:
                raise ValueError(f"'{path}' line {line} (patient {pid!r}): no image path in column image/dicom.")
            mask = _resolve(data_dir, row.get("mask"), "mask", line)
            if mask is None:
                raise ValueError(f"'{path}' line {line} (patient {pid!r}): column mask is empty; training needs masks.")
            days = None
            if "days" in row and pd.notna(row["days"]):
                try:
                    days = float(row["days"])
                except ValueError as err:
                    raise ValueError(f"'{path}' line {line}: column days = {row['days']!r} is not a number.") from err
            elif "scan_date" in row and pd.notna(row["scan_date"]):
                date = pd.to_datetime(str(row["scan_date"]), errors="coerce")
                if pd.isna(date):
                    raise ValueError(
                        f"'{path}' line {line}: column scan_date = {row['scan_date']!r} is not a YYYY-MM-DD date."
                    )
                first_date = date if first_date is None else first_date
                days = float((date - first_date).days)
            tp = int(row["timepoint"]) if "timepoint" in row and pd.notna(row["timepoint"]) else k
            roi = str(row["roi"]) if "roi" in row and pd.notna(row.get("roi")) else None
            records.append(ScanRecord(str(pid), tp, days, image, mask, roi))
    if not records:
        raise ValueError(f"'{path}' has no rows.")
    return records


def read_clinical(data_dir: str | Path, required: bool) -> pd.DataFrame | None:
    """``DIR/clinical.csv`` indexed by patient_id (columns age, sex, smoking, grade, stage), or None.

    Raises:
        FileNotFoundError: ``required`` and the file is missing.
        ValueError: a column is missing.
    """
    path = Path(data_dir) / "clinical.csv"
    if not path.is_file():
        if required:
            raise FileNotFoundError(
                f"No clinical table at '{path}': models with clinical input need clinical.csv "
                f"(patient_id, {', '.join(CLINICAL_COLUMNS)}); or train with clinical fusion off."
            )
        return None
    table = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in ("patient_id",) + CLINICAL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"'{path}' lacks column(s) {missing}; found {list(table.columns)}.")
    if table["patient_id"].duplicated().any():
        dup = table.loc[table["patient_id"].duplicated(), "patient_id"].tolist()
        raise ValueError(f"'{path}' lists patient(s) {dup[:5]} more than once; give one row per patient.")
    return table.set_index("patient_id")


def patient_lvcr(days: Sequence[float | None], volumes_cm3: Sequence[float], patient_id: str) -> float | None:
    """LVCR (/day) of one patient from ground-truth tumour volumes, or None when not computable.

    ``volumes_cm3`` are :func:`mkunet.analysis.kinetics.mask_volume_cm3` mesh volumes (the one LVCR
    volume measure). Uses :func:`mkunet.analysis.kinetics.lvcr` (interval weights). Returns None (LVCR unknown)
    with fewer than two scans, missing days or an empty mask at some timepoint.
    """
    if len(volumes_cm3) < 2 or any(d is None for d in days) or min(volumes_cm3) <= 0:
        return None
    from mkunet.analysis.kinetics import lvcr

    try:
        return float(lvcr(list(days), list(volumes_cm3), patient_id=patient_id).lvcr_per_day)
    except ValueError as err:
        warnings.warn(f"patient {patient_id!r}: LVCR not computable ({err}); treated as unknown.", stacklevel=2)
        return None


def split_patients(
    patient_ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Seeded patient-level split into train / val / test (sorted lists).

    ``round(n * fraction)`` patients go to val and test each (at least 1 when the fraction
    is > 0 and enough patients exist); at least one patient always stays in train.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"`{name}` must lie in [0, 1), got {frac!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training patients; lower them."
        )
    ids = sorted(set(str(p) for p in patient_ids))
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(
            f"{n} patient(s) cannot be split with val_fraction={val_fraction}, test_fraction={test_fraction}: "
            "add patients or lower the fractions."
        )
    val = sorted(ids[i] for i in order[:n_val])
    test = sorted(ids[i] for i in order[n_val : n_val + n_test])
    train = sorted(ids[i] for i in order[n_val + n_test :])
    return {"train": train, "val": val, "test": test}


def load_scan(record: ScanRecord) -> tuple[Volume, np.ndarray]:
    """Read the CT (HU) and its bool (z, y, x) tumour mask on the CT grid.

    The mask may be a label map (NIfTI/NRRD, resampled nearest onto the CT when the
    grids differ) or a DICOM RTSTRUCT (``record.roi`` picks the ROI).
    """
    from mkunet.io import read_mask, read_rtstruct, read_volume

    if not record.image.exists():
        raise FileNotFoundError(f"Scan {record.key}: image '{record.image}' does not exist.")
    if not record.mask.exists():
        raise FileNotFoundError(f"Scan {record.key}: mask '{record.mask}' does not exist.")
    volume = read_volume(record.image)
    volume.patient_id = record.patient_id
    if record.mask.suffix.lower() == ".dcm":
        mask = read_rtstruct(record.mask, volume, roi=record.roi)
    else:
        mask = read_mask(record.mask, volume)
    return volume, np.asarray(mask, dtype=bool)


# ---------------------------------------------------------------------------------- patches
def sample_patch(
    case: PreparedCase,
    patch: Sequence[int],
    rng: np.random.Generator,
    tumour_fraction: float,
    lung_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop one training patch from a cached case.

    One uniform draw ``u`` picks the centre: ``u < tumour_fraction`` (and a non-empty
    mask), a uniformly drawn tumour voxel; ``u < tumour_fraction + lung_fraction`` (and a
    lung found), a uniformly drawn non-tumour voxel of the lung region (hard negatives:
    vessels, pleura, dense lung); otherwise a uniformly drawn voxel. The window is shifted
    to lie inside the volume, and zero-padded where the volume is smaller.

    Returns:
        image float32 (C, Z, Y, X) and label float32 (1, Z, Y, X), ``(Z, Y, X) = patch``:
        1 tumour, 0 background, :data:`IGNORE_VALUE` where ``case.ignore`` is set.
    """
    shape = case.label.shape
    u = rng.random()
    if case.foreground.size and u < tumour_fraction:
        flat = case.foreground[rng.integers(case.foreground.size)]
        centre = np.unravel_index(int(flat), shape)
    elif case.lung.size and tumour_fraction <= u < tumour_fraction + lung_fraction:
        flat = case.lung[rng.integers(case.lung.size)]
        centre = np.unravel_index(int(flat), shape)
    else:
        centre = tuple(int(rng.integers(s)) for s in shape)
    starts, src, dst = [], [], []
    for c, s, p in zip(centre, shape, patch):
        start = int(c) - p // 2
        start = min(max(start, 0), max(s - p, 0)) if s >= p else -((p - s) // 2)
        a, b = max(start, 0), min(start + p, s)
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
        starts.append(start)
    image = np.zeros((case.channels.shape[0], *patch), np.float32)
    label = np.zeros((1, *patch), np.float32)
    image[(slice(None), *dst)] = case.channels[(slice(None), *src)]
    label[(0, *dst)] = case.label[tuple(src)]
    if case.ignore is not None:
        label[(0, *dst)][case.ignore[tuple(src)]] = IGNORE_VALUE
    return image, label


class PatchDataset(torch.utils.data.Dataset):
    """The training patches of one epoch, each a pure function of (seed, epoch, global index).

    Global sample ``i`` of epoch ``e`` uses case ``perm_e[i % n_cases]`` (a seeded
    permutation per epoch, so every case is visited once per ``n_cases`` samples) and a
    generator seeded with ``(seed, e, i)`` for the patch position and the augmentation. A
    rank of a ``world_size`` DDP job takes samples ``rank, rank + world_size, ...``; the
    patches do not depend on the number of DataLoader workers, and a resumed run draws
    exactly the patches the uninterrupted run would have drawn.

    With ``real_cases`` (tumours inserted into real backgrounds), sample ``i`` comes from a
    uniformly drawn real case with probability ``real_fraction`` (a generator seeded with
    ``(seed, e, i, 11)``, so the draws of the cohort cases are those of a run without them).
    Items: ``image`` (C, Z, Y, X), ``label`` (1, Z, Y, X) in {0, 1}, ``weight`` (1, Z, Y, X)
    in {0, 1} (0 on ignored voxels), ``clinical`` (6,).
    """

    def __init__(
        self,
        cases: Sequence[PreparedCase],
        patch: Sequence[int],
        samples: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        tumour_fraction: float = 2.0 / 3.0,
        augment: Callable[[int], Callable] | None = None,
        lung_fraction: float = 0.0,
        real_cases: Sequence[PreparedCase] = (),
        real_fraction: float = 0.0,
    ) -> None:
        if not cases:
            raise ValueError("No training cases: the training split is empty.")
        self.cases = list(cases)
        self.patch = tuple(int(p) for p in patch)
        self.seed, self.epoch = int(seed), int(epoch)
        per_rank = -(-int(samples) // int(world_size))  # equal batch counts on every rank (DDP)
        self.indices = [rank + world_size * j for j in range(per_rank)]
        self.order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(len(self.cases))
        self.tumour_fraction = float(tumour_fraction)
        self.lung_fraction = float(lung_fraction)
        self.augment = augment
        self._transform: Callable | None = None
        self.real_cases = list(real_cases)
        self.real_fraction = float(real_fraction) if self.real_cases else 0.0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = self.indices[k]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        case = self.cases[self.order[i % len(self.cases)]]
        if self.real_fraction > 0:  # a separate stream: runs without real cases draw as before
            pick = np.random.default_rng([self.seed, self.epoch, i, 11])
            if pick.random() < self.real_fraction:
                case = self.real_cases[int(pick.integers(len(self.real_cases)))]
        image, label = sample_patch(case, self.patch, rng, self.tumour_fraction, self.lung_fraction)
        if self.augment is not None:
            if self._transform is None:
                self._transform = self.augment(int(rng.integers(2**31 - 1)))
            transform = self._transform
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed=int(rng.integers(2**31 - 1)))
            out = transform({"image": image, "label": label})
            image = _to_numpy(out["image"])
            label = _to_numpy(out["label"])
        weight = (label < IGNORE_VALUE - 0.5).astype(np.float32)
        label = ((label > 0.5) & (weight > 0)).astype(np.float32)
        clinical = case.clinical if case.clinical is not None else np.zeros(6, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32)),
            "weight": torch.from_numpy(weight),
            "clinical": torch.from_numpy(np.asarray(clinical, dtype=np.float32)),
        }


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if hasattr(value, "as_tensor"):
            value = value.as_tensor()
        return value.numpy()
    return np.asarray(value)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (:func:`mkunet.utils.atomic_write_text`)."""
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
