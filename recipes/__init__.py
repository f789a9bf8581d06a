"""Training and evaluation recipes (TRL SFT with DoRA; the paper's evaluation protocol)."""
