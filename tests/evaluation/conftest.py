"""Fixtures of tests/evaluation: the multiple-choice ones live in eval_fixtures.py (issue 11); other
modules add theirs the same way (one import line each)."""

from eval_fixtures import dev_items, dora_runs, hash_cache, tiny, tiny_path  # noqa: F401
