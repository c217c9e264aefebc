"""Input and output: CT volumes and masks (DICOM series, NIfTI, NRRD, RTSTRUCT), DICOM SEG and
RTSTRUCT writers (:mod:`mkunet.io.dicom_out`) and a PACS over DICOMweb (:mod:`mkunet.io.pacs`).

Arrays are (z, y, x), spacing (z, y, x) in mm, origin (x, y, z) in mm (LPS); see
:mod:`mkunet.volume`. The PACS and DICOM writers are imported from their modules.
"""

from mkunet.io.dicom_in import DicomSeriesError
from mkunet.io.files import list_rois, read_mask, read_rtstruct, read_volume, write_mask, write_volume
from mkunet.volume import Volume, same_grid

__all__ = [
    "DicomSeriesError",
    "Volume",
    "list_rois",
    "read_mask",
    "read_rtstruct",
    "read_volume",
    "same_grid",
    "write_mask",
    "write_volume",
]
