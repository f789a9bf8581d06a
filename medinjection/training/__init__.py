"""Training: the TRL SFT recipe logic behind ``recipes/train.py`` and ``medinjection train``."""
