"""MedInjection-FR toolkit: build, review, mix, publish, train and evaluate."""

__version__ = "0.1.0"
