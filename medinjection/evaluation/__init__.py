"""Evaluation: tasks (evaluation sets), the paper's multiple-choice protocol, open-ended metrics, the judge, the report."""
