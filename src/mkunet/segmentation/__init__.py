"""Segmentation: from a CT volume and a click, box or nothing, to a tumour mask.

* :mod:`~mkunet.segmentation.infer`: :func:`segment` and :func:`segment_timepoints`, the entry points;
* :mod:`~mkunet.segmentation.lesion`: the image-driven one-click lesion model;
* :mod:`~mkunet.segmentation.candidates`: whole-volume lesion detection;
* :mod:`~mkunet.segmentation.lung`: lung masks and the lung region;
* :mod:`~mkunet.segmentation.register`: follow-up to baseline registration (tracking);
* :mod:`~mkunet.segmentation.uncertainty`: each volume's segmentation SE and sigma(ln V).

The names users need are importable from :mod:`mkunet` itself.
"""
