"""Dataset and model cards, filled from computed stats with huggingface_hub."""
