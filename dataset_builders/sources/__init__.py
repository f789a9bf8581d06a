"""Source adapters, one module per source; adding a source is adding a file and one line here."""

from __future__ import annotations

from medinjection.dataset_builders.sources.base import (
    RawRow,
    SourceAdapter,
    SourceFormatError,
    SourceUnavailable,
)
from medinjection.dataset_builders.sources.frbmedqa import FrBMedQA
from medinjection.dataset_builders.sources.frenchmedmcqa import FrenchMedMCQA
from medinjection.dataset_builders.sources.generated import GeneratedRecords
from medinjection.dataset_builders.sources.medinjection_release import MedInjectionRelease
from medinjection.dataset_builders.sources.mediqal import MediQAl
from medinjection.dataset_builders.sources.medmcqa import MedMCQA
from medinjection.dataset_builders.sources.medqa import MedQA
from medinjection.dataset_builders.sources.mlabonne_medical_cases_fr import MlabonneMedicalCasesFr
from medinjection.dataset_builders.sources.mlabonne_medical_mcqa_fr import MlabonneMedicalMcqaFr
from medinjection.dataset_builders.sources.mmlu_medical import MMLUMedical
from medinjection.dataset_builders.sources.pubmedqa import PubMedQA
from medinjection.dataset_builders.sources.seed_texts import SeedTexts

ADAPTERS: dict[str, type[SourceAdapter]] = {
    adapter.name: adapter
    for adapter in (
        # native
        FrenchMedMCQA,
        MediQAl,
        FrBMedQA,
        MlabonneMedicalMcqaFr,
        MlabonneMedicalCasesFr,
        # the published MedInjection-FR subsets (any provenance)
        MedInjectionRelease,
        # English sources to translate
        PubMedQA,
        MMLUMedical,
        MedQA,
        MedMCQA,
        # generation: seed texts for synthesis, and our generated records read back
        SeedTexts,
        GeneratedRecords,
    )
}


def get_adapter(name: str) -> type[SourceAdapter]:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown source adapter {name!r}; known: {sorted(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "RawRow", "SourceAdapter", "SourceFormatError", "SourceUnavailable", "get_adapter"]
