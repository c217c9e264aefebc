"""Cohort runs: the input tables (:mod:`~mkunet.run.inputs`), the resumable per-patient pipeline
and cohort statistics (:mod:`~mkunet.run.pipeline`) and the run folder it leaves
(:mod:`~mkunet.run.store`).
"""
