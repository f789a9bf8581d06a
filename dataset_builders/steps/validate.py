"""Schema validation: every record goes through ``medinjection.core.schema.validate_record``."""

from __future__ import annotations

from datatrove.data import Document

from medinjection.core.schema import RecordError, validate_record
from medinjection.dataset_builders.steps.rejects import RecordFilter


class SchemaValidator(RecordFilter):
    name = "validate"
    step_name = "validate"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        try:
            validate_record(doc.metadata)
        except RecordError as err:
            return self.reject(doc, err.reason, err.detail)
        return True
