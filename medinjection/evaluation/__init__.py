"""Evaluation: benchmarks, the paper's multiple-choice protocol, open-ended metrics, the judge, the report."""
