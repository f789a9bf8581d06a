"""Quality review: Argilla spot-checks and the verdicts that flow back into the data and the card."""
