"""The review dataset in Argilla: settings, records from dataset rows, push and pull.

The argilla 2.x SDK contacts the server when any settings object is created (``rg.TextField`` calls
``/api/v1/me``), so ``review_settings`` takes a live client and is the one place settings are built.

Record ids are the dataset ids: pushing the same rows again updates them, never duplicates.
Every record shows the question, options and answer; a translated record also shows its English
original (``original``, an optional field left empty on native and synthetic records). The
translation-faithfulness question is optional for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medinjection.core.schema import options_text

if TYPE_CHECKING:
    import argilla as rg

CORRECTNESS = ("correct", "incorrect", "unsure")
ERROR_TYPES = {
    "factual_error": "factual error",
    "wrong_answer_key": "wrong answer key",
    "bad_translation": "bad translation",
    "off_topic": "off-topic",
    "personal_data": "contains personal data",
    "other": "other",
}
FIELDS = ("question", "options", "answer", "original")
QUESTIONS = (
    "answer_correct",
    "language_quality",
    "translation_faithfulness",
    "error_types",
    "corrected_answer",
)
METADATA = ("provenance", "source", "origin", "type", "split", "language_score", "length", "quality_score")
MIN_SUBMITTED = 2

GUIDELINES = """\
Review each item as a clinician or medical student would.

1. **Is the answer correct?** `incorrect` if the marked answer (or open answer) is wrong or
   the question cannot be answered as written; `unsure` when you cannot tell.
2. **Language quality** of the French (1 = unusable, 5 = native, idiomatic medical French).
3. **Translation faithfulness** (translated items only; compare with the English original beside it):
   1 = meaning changed, 5 = faithful.
4. **Error types**: tick every problem you see (none when the item is fine).
5. **Corrected answer**: optional; the right answer when you know it.
"""


def review_settings(client: rg.Argilla, min_submitted: int = MIN_SUBMITTED) -> rg.Settings:
    """The review dataset's settings (fields, questions, metadata, ``TaskDistribution(min_submitted)``)."""
    import argilla as rg

    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.TextField(name="question", title="Question (French)", use_markdown=True, client=client),
            rg.TextField(name="options", title="Options", use_markdown=True, required=False, client=client),
            rg.TextField(
                name="answer", title="Answer given by the dataset", use_markdown=True, client=client
            ),
            rg.TextField(
                name="original",
                title="English original (translated items)",
                use_markdown=True,
                required=False,
                client=client,
            ),
        ],
        questions=[
            rg.LabelQuestion(
                name="answer_correct", title="Is the answer correct?", labels=list(CORRECTNESS), client=client
            ),
            rg.RatingQuestion(
                name="language_quality", title="Language quality (1-5)", values=[1, 2, 3, 4, 5], client=client
            ),
            rg.RatingQuestion(
                name="translation_faithfulness",
                title="Faithfulness of the translation (1-5, translated items only)",
                values=[1, 2, 3, 4, 5],
                required=False,
                client=client,
            ),
            rg.MultiLabelQuestion(
                name="error_types",
                title="Error types",
                labels=dict(ERROR_TYPES),
                required=False,
                client=client,
            ),
            rg.TextQuestion(
                name="corrected_answer", title="Corrected answer (optional)", required=False, client=client
            ),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="provenance", client=client),
            rg.TermsMetadataProperty(name="source", client=client),
            rg.TermsMetadataProperty(name="origin", client=client),
            rg.TermsMetadataProperty(name="type", client=client),
            rg.TermsMetadataProperty(name="split", client=client),
            rg.FloatMetadataProperty(
                name="language_score", title="language probability", min=0.0, max=1.0, client=client
            ),
            rg.IntegerMetadataProperty(name="length", title="length (characters)", min=0, client=client),
            rg.IntegerMetadataProperty(
                name="quality_score", title="quality screen score (1-5)", min=1, max=5, client=client
            ),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def answer_text(record: dict[str, Any]) -> str:
    """The answer as reviewers read it: letters with their option texts, or the open answer."""
    if record.get("type") == "OEQ" or not record.get("options"):
        return str(record.get("answer") or "")
    texts = {opt["letter"]: opt["text"] for opt in record["options"]}
    return "\n".join(
        f"**{letter}.** {texts.get(letter, '?')}" for letter in sorted(record.get("correct_letters") or [])
    )


def question_text(record: dict[str, Any]) -> str:
    context = str(record.get("context") or "").strip()
    question = str(record["instruction"]).strip()
    return f"{context}\n\n{question}" if context else question


def original_text(record: dict[str, Any]) -> str | None:
    original = record.get("original")
    if not original:
        return None
    parts = [str(original.get("context") or "").strip(), str(original.get("instruction") or "").strip()]
    if original.get("options"):
        parts.append(options_text(original["options"]))
    if original.get("answer"):
        parts.append(f"**Answer:** {original['answer']}")
    return "\n\n".join(p for p in parts if p)


def record_length(record: dict[str, Any]) -> int:
    return len(question_text(record)) + len(options_text(record.get("options") or []))


def to_review_record(record: dict[str, Any]) -> rg.Record:
    """An Argilla record for one dataset row; its id is the dataset id."""
    import argilla as rg

    fields = {"question": question_text(record), "answer": answer_text(record) or "(empty)"}
    if record.get("options"):
        fields["options"] = options_text(record["options"])
    original = original_text(record)
    if original:
        fields["original"] = original
    metadata = {
        "provenance": record["provenance"],
        "source": record["source"],
        "origin": record.get("origin") or "",
        "type": record["type"],
        "split": record.get("split") or record.get("source_split") or "",
        "language_score": float(record.get("language_score") or 0.0),
        "length": record_length(record),
    }
    score = (record.get("quality") or {}).get("score")
    if score is not None:  # the quality screen's grade, for its agreement with the reviewers' verdicts
        metadata["quality_score"] = int(score)
    return rg.Record(id=record["id"], fields=fields, metadata=metadata)


def get_or_create(
    client: rg.Argilla, name: str, workspace: str | None, settings_factory, min_submitted: int = MIN_SUBMITTED
) -> rg.Dataset:
    """The dataset ``name`` in ``workspace``, created with ``settings_factory(client, min_submitted)`` if absent."""
    import argilla as rg

    dataset = client.datasets(name=name, workspace=workspace)
    if dataset is not None:
        return dataset
    dataset = rg.Dataset(
        name=name, workspace=workspace, settings=settings_factory(client, min_submitted), client=client
    )
    return dataset.create()


def push_review(
    client: rg.Argilla,
    rows: list[dict[str, Any]],
    name: str,
    workspace: str | None = None,
    min_submitted: int = MIN_SUBMITTED,
) -> rg.Dataset:
    """Create (or reuse) the review dataset ``name`` and log ``rows`` into it (upsert by id)."""
    dataset = get_or_create(client, name, workspace, review_settings, min_submitted)
    dataset.records.log([to_review_record(row) for row in rows])
    return dataset


def usernames(client: rg.Argilla) -> dict[str, str]:
    return {str(user.id): user.username for user in client.users}


def plain_records(dataset: rg.Dataset, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every record of ``dataset`` as ``{id, fields, metadata, responses: [{user, user_id, status, values}]}``.

    Responses are grouped per annotator; ``user`` is the username when known, else the user id.
    """
    names = names or {}
    out = []
    for record in dataset.records(with_responses=True, with_suggestions=False):
        by_user: dict[str, dict[str, Any]] = {}
        for response in record.responses:
            user_id = str(response.user_id)
            status = getattr(response.status, "value", response.status)
            entry = by_user.setdefault(
                user_id,
                {"user": names.get(user_id, user_id), "user_id": user_id, "status": status, "values": {}},
            )
            entry["values"][response.question_name] = response.value
        out.append(
            {
                "id": record.id,
                "fields": dict(record.fields),
                "metadata": dict(record.metadata),
                "responses": sorted(by_user.values(), key=lambda r: r["user"]),
            }
        )
    return sorted(out, key=lambda r: r["id"])


def find_dataset(client: rg.Argilla, name: str, workspace: str | None = None) -> rg.Dataset:
    dataset = client.datasets(name=name, workspace=workspace)
    if dataset is None:
        where = f" in workspace {workspace!r}" if workspace else ""
        known = sorted(d.name for d in client.datasets)
        raise LookupError(f"no Argilla dataset {name!r}{where}; datasets on the server: {known}")
    return dataset


def pull_records(client: rg.Argilla, name: str, workspace: str | None = None) -> list[dict[str, Any]]:
    """The review records of dataset ``name`` with their responses, as plain dicts (see ``quality.report``)."""
    return plain_records(find_dataset(client, name, workspace), usernames(client))
