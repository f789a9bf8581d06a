"""Datatrove pipelines and source adapters that build the MedInjection-FR dataset folder."""
