"""Analysis of segmented lesions: shape features (:mod:`~mkunet.analysis.shape`), growth kinetics
(:mod:`~mkunet.analysis.kinetics`), the Immune Evasion Score (:mod:`~mkunet.analysis.ies`),
survival and response statistics (:mod:`~mkunet.analysis.survival`) and segmentation metrics
(:mod:`~mkunet.analysis.metrics`).

Units: volumes cm^3, lengths mm, times days, rates per day.
"""
