"""Cohort runs: the input tables (:mod:`~mkunet.run.inputs`), the resumable cohort pipeline
(:mod:`~mkunet.run.pipeline`: :func:`~mkunet.run.pipeline.run_cohort`) with one patient's steps
(:mod:`~mkunet.run.patient`), target lesions (:mod:`~mkunet.run.lesions`), the cache
(:mod:`~mkunet.run.cache`) and the cohort statistics (:mod:`~mkunet.run.statistics`), the demo
(:mod:`~mkunet.run.demo`) and the run folder it leaves (:mod:`~mkunet.run.store`).
"""
