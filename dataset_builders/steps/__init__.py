"""Datatrove pipeline steps of the build, one per file."""
