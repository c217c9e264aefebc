"""Segmentation: from a CT volume and a click, box or nothing, to a tumour mask.

* :mod:`~mkunet.segmentation.infer`: :func:`segment` and :func:`segment_timepoints`, the entry points;
* :mod:`~mkunet.segmentation.prompts`: seeds, boxes and previous masks (where to look);
* :mod:`~mkunet.segmentation.image_path`: the image-driven path of ``segment`` (``method="auto"``);
* :mod:`~mkunet.segmentation.network`: the network path of ``segment`` and its component rule;
* :mod:`~mkunet.segmentation.components`: the connected component at a point, else the nearest;
* :mod:`~mkunet.segmentation.tracking`: following a lesion into later scans, the fixed-point LVCR;
* :mod:`~mkunet.segmentation.results`: ``Segmentation``, ``LongitudinalSegmentation`` and their outputs;
* :mod:`~mkunet.segmentation.lesion`: the image-driven one-click lesion model;
* :mod:`~mkunet.segmentation.candidates`: whole-volume lesion detection;
* :mod:`~mkunet.segmentation.lung`: lung masks and the lung region;
* :mod:`~mkunet.segmentation.register`: follow-up to baseline registration (tracking);
* :mod:`~mkunet.segmentation.uncertainty`: each volume's segmentation SE and sigma(ln V);
* :mod:`~mkunet.segmentation.orientation`: the one canonical orientation (LPS) the entry points
  segment in, whatever the scan's, with results brought back exactly onto the user's grid.

The names users need are importable from :mod:`mkunet` itself.
"""
