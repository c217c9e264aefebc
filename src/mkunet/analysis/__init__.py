"""Analysis of segmented lesions: shape features (:mod:`~mkunet.analysis.shape`), growth kinetics
(:mod:`~mkunet.analysis.kinetics`), the Immune Evasion Score (:mod:`~mkunet.analysis.ies`),
survival statistics (:mod:`~mkunet.analysis.survival`), the scores' association with the biomarkers
(:mod:`~mkunet.analysis.association`), the whole cohort analysis (:mod:`~mkunet.analysis.cohort`) and
segmentation metrics (:mod:`~mkunet.analysis.metrics`).

Units: volumes cm^3, lengths mm, times days, rates per day.
"""
