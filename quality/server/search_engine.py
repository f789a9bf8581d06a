"""An Argilla search engine that answers from the server's own SQL database (runs inside the server venv).

argilla-server 2.8 wants Elasticsearch or OpenSearch, but it picks its engine from a registry
(``SearchEngine.register(name)``) by ``ARGILLA_SEARCH_ENGINE``. This engine registers as
``medinjection-sql``. It keeps no index of its own: the SQL database the server already writes
(records, responses, suggestions, vectors) is the source of truth, so every ``index_*`` /
``update_*`` call is a no-op, and ``search`` loads one dataset's rows and evaluates the query in
Python with the semantics of the Elasticsearch engine (``argilla_server.search_engine.commons``):

- text query: ``simple_query_string`` with ``default_operator=AND`` over all fields or one field:
  lower-cased word tokens, ``term*`` prefixes, ``"quoted phrases"``, ``-term`` negation, ``a | b``;
- filters: ``AndFilter`` of terms / range filters on record properties (``status``...), metadata,
  suggestions and responses (a response filter with a user only looks at that user's response;
  the ``pending`` response status means "no response from that user", as in Elasticsearch);
- sort on record properties, metadata, suggestions and responses (missing values last);
- per-user order: without a sort, the records an annotator sees are shuffled deterministically per
  user (Elasticsearch's ``random_score`` seeded with the user id), so that annotators sharing a
  dataset do not all start on the same records;
- dataset progress, per-user progress, metadata metrics, and brute-force cosine similarity search.

Loading a dataset per query is linear in its size: good for review samples of a few thousand records
and one or a few reviewers, not for large datasets (use Elasticsearch there).

This module imports ``argilla_server``: it is loaded by the launcher inside the server venv, never by
the ``medinjection`` package itself.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SimilarityOrder, SortOrder
from argilla_server.models import (
    Dataset,
    Field,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FilterScope,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import select

ENGINE_NAME = "medinjection-sql"
_TOKEN = re.compile(r"\w+", re.UNICODE)
_QUERY_PART = re.compile(r'(-?)"([^"]*)"|(\S+)')


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _text_of(value: Any) -> str:
    """All the text in a field value (text, chat messages, custom JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    return str(value)


class _TextMatcher:
    """A small ``simple_query_string`` (default operator AND) over analysed tokens."""

    def __init__(self, query: str):
        # Each clause is a list of alternatives (OR); each alternative is (negated, kind, tokens).
        self.clauses: list[list[tuple[bool, str, list[str]]]] = []
        pending_or = False
        for match in _QUERY_PART.finditer(query):
            negated_phrase, phrase, word = match.groups()
            if word == "|":
                pending_or = True
                continue
            if phrase is not None:
                item = (negated_phrase == "-", "phrase", _tokens(phrase))
            else:
                negated = word.startswith("-") and len(word) > 1
                word = word[1:] if negated else word
                prefix = word.endswith("*")
                item = (negated, "prefix" if prefix else "term", _tokens(word.rstrip("*")))
            if not item[2]:
                continue
            if pending_or and self.clauses:
                self.clauses[-1].append(item)
            else:
                self.clauses.append([item])
            pending_or = False

    @staticmethod
    def _hits(kind: str, words: list[str], tokens: list[str]) -> int:
        if kind == "phrase" or len(words) > 1:
            n = len(words)
            return sum(1 for i in range(len(tokens) - n + 1) if tokens[i : i + n] == words)
        if kind == "prefix":
            return sum(1 for token in tokens if token.startswith(words[0]))
        return tokens.count(words[0])

    def score(self, text: str) -> float | None:
        """None when the text does not match; else a score that grows with the number of hits."""
        if not self.clauses:
            return 1.0
        tokens = _tokens(text)
        total = 0
        for alternatives in self.clauses:
            matched = False
            for negated, kind, words in alternatives:
                hits = self._hits(kind, words, tokens)
                if negated:
                    matched = matched or hits == 0
                elif hits:
                    matched = True
                    total += hits
            if not matched:
                return None
        # A bounded, length-normalised term frequency: enough to rank, not BM25.
        return 1.0 + total / (1.0 + math.sqrt(len(tokens)))


def _user_shuffle_key(user_id: Any, record_id: Any) -> float:
    digest = hashlib.blake2b(f"{user_id}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _in_range(value: Any, ge: float | None, le: float | None) -> bool:
    try:
        if ge is not None and not value >= ge:
            return False
        if le is not None and not value <= le:
            return False
    except TypeError:
        return False
    return True


def _terms_match(values: Any, terms: list[str]) -> bool:
    wanted = {str(term) for term in terms}
    return any(str(value) in wanted for value in _as_list(values))


class _Doc(dict):
    """One record as the search engine sees it (the shape of the Elasticsearch document)."""


@SearchEngine.register(ENGINE_NAME)
class SqlSearchEngine(SearchEngine):
    """See the module docstring."""

    @classmethod
    async def new_instance(cls) -> SqlSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        async with AsyncSessionLocal() as db:
            await db.execute(select(1))
        return True

    async def info(self) -> dict:
        return {"name": ENGINE_NAME, "backend": "server SQL database", "version": "1"}

    # The database is the index: nothing to create, write or delete here.
    async def create_index(self, dataset: Dataset) -> None:
        return None

    async def delete_index(self, dataset: Dataset) -> None:
        return None

    async def configure_metadata_property(
        self, dataset: Dataset, metadata_property: MetadataProperty
    ) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def update_record_response(self, response: Response) -> None:
        return None

    async def delete_record_response(self, response: Response) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    # ------------------------------------------------------------------ loading

    async def _load(
        self,
        dataset_id: UUID,
        *,
        fields: bool = False,
        responses: bool = False,
        suggestions: bool = False,
    ) -> list[_Doc]:
        async with AsyncSessionLocal() as db:
            metadata_names = set(
                (
                    await db.execute(
                        select(MetadataProperty.name).where(MetadataProperty.dataset_id == dataset_id)
                    )
                )
                .scalars()
                .all()
            )
            columns = [
                Record.id,
                Record.external_id,
                Record.status,
                Record.inserted_at,
                Record.updated_at,
                Record.metadata_,
            ]
            image_fields: set[str] = set()
            if fields:
                columns.append(Record.fields)
                field_rows = (
                    await db.execute(select(Field.name, Field.settings).where(Field.dataset_id == dataset_id))
                ).all()
                image_fields = {row.name for row in field_rows if (row.settings or {}).get("type") == "image"}
            rows = (
                await db.execute(
                    select(*columns)
                    .where(Record.dataset_id == dataset_id)
                    .order_by(Record.inserted_at, Record.id)
                )
            ).all()
            docs: dict[UUID, _Doc] = {}
            for row in rows:
                metadata = row.metadata_ or {}
                doc = _Doc(
                    id=row.id,
                    external_id=row.external_id,
                    status=str(row.status),
                    inserted_at=row.inserted_at,
                    updated_at=row.updated_at,
                    # Like the Elasticsearch mapping: only declared metadata properties are searchable.
                    metadata={k: v for k, v in metadata.items() if k in metadata_names and v is not None},
                    responses=[],
                    suggestions={},
                )
                if fields:
                    doc["fields"] = {k: v for k, v in (row.fields or {}).items() if k not in image_fields}
                docs[row.id] = doc
            if responses and docs:
                result = await db.execute(
                    select(
                        Response.id, Response.record_id, Response.user_id, Response.status, Response.values
                    )
                    .join(Record, Record.id == Response.record_id)
                    .where(Record.dataset_id == dataset_id)
                )
                # Each SELECT reads committed rows on its own: skip rows of records inserted in between.
                for row in result.all():
                    if row.record_id not in docs:
                        continue
                    values = {name: (value or {}).get("value") for name, value in (row.values or {}).items()}
                    docs[row.record_id]["responses"].append(
                        {"id": row.id, "user_id": row.user_id, "status": str(row.status), "values": values}
                    )
            if suggestions and docs:
                result = await db.execute(
                    select(
                        Suggestion.record_id,
                        Question.name,
                        Suggestion.value,
                        Suggestion.score,
                        Suggestion.agent,
                        Suggestion.type,
                    )
                    .join(Question, Question.id == Suggestion.question_id)
                    .join(Record, Record.id == Suggestion.record_id)
                    .where(Record.dataset_id == dataset_id)
                )
                for row in result.all():
                    if row.record_id not in docs:
                        continue
                    docs[row.record_id]["suggestions"][row.name] = {
                        "value": row.value,
                        "score": row.score,
                        "agent": row.agent,
                        "type": None if row.type is None else str(row.type),
                    }
        return list(docs.values())

    # ------------------------------------------------------------------ filters and sort

    @staticmethod
    def _needs(filter: Filter | None, sort: list[Order] | None) -> tuple[bool, bool]:
        """(responses needed, suggestions needed) for a filter and a sort."""
        scopes: list[FilterScope] = [order.scope for order in sort or []]
        stack = [filter] if filter is not None else []
        while stack:
            item = stack.pop()
            if isinstance(item, AndFilter):
                stack.extend(item.filters)
            else:
                scopes.append(item.scope)
        return (
            any(isinstance(scope, ResponseFilterScope) for scope in scopes),
            any(isinstance(scope, SuggestionFilterScope) for scope in scopes),
        )

    @staticmethod
    def _scope_values(doc: _Doc, scope: FilterScope) -> Any:
        if isinstance(scope, MetadataFilterScope):
            return doc["metadata"].get(scope.metadata_property)
        if isinstance(scope, RecordFilterScope):
            return doc.get(scope.property)
        if isinstance(scope, SuggestionFilterScope):
            return (doc["suggestions"].get(scope.question) or {}).get(scope.property)
        raise ValueError(f"Cannot process request for search scope {scope}")

    def _matches(self, doc: _Doc, filter: Filter) -> bool:
        if isinstance(filter, AndFilter):
            return all(self._matches(doc, item) for item in filter.filters)
        if isinstance(filter.scope, ResponseFilterScope):
            return self._matches_response(doc, filter)
        value = self._scope_values(doc, filter.scope)
        if isinstance(filter, TermsFilter):
            return _terms_match(value, filter.values)
        if isinstance(filter, RangeFilter):
            return any(_in_range(item, filter.ge, filter.le) for item in _as_list(value))
        raise ValueError(f"Cannot process request for filter {filter}")

    @staticmethod
    def _matches_response(doc: _Doc, filter: Filter) -> bool:
        scope: ResponseFilterScope = filter.scope
        user_id = scope.user.id if scope.user else None
        responses = [r for r in doc["responses"] if user_id is None or r["user_id"] == user_id]
        if scope.question:
            for response in responses:
                value = response["values"].get(scope.question)
                if isinstance(filter, TermsFilter) and _terms_match(value, filter.values):
                    return True
                if isinstance(filter, RangeFilter) and any(
                    _in_range(v, filter.ge, filter.le) for v in _as_list(value)
                ):
                    return True
            return False
        if scope.property == "status" and isinstance(filter, TermsFilter):
            statuses = {str(status) for status in filter.values}
            # "pending" = no response (from this user, when the scope has one): a draft is not pending.
            if str(ResponseStatusFilter.pending) in statuses and not responses:
                return True
            statuses.discard(str(ResponseStatusFilter.pending))
            if not statuses:
                return False
            return any(r["status"] in statuses for r in responses)
        raise ValueError(f"Cannot process filter scope {scope}")

    def _sort_value(self, doc: _Doc, order: Order) -> Any:
        scope = order.scope
        if isinstance(scope, ResponseFilterScope):
            user_id = scope.user.id if scope.user else None
            name = scope.question or scope.property
            values = []
            for response in doc["responses"]:
                if user_id is not None and response["user_id"] != user_id:
                    continue
                value = response["values"].get(name) if scope.question else response.get(name)
                values.extend(_as_list(value))
            numbers = [v for v in values if isinstance(v, (int, float))]
            if numbers:
                return sum(numbers) / len(numbers)  # Elasticsearch's nested sort mode "avg"
            return min((str(v) for v in values), default=None)
        values = _as_list(self._scope_values(doc, scope))
        if not values:
            return None
        return (max if order.order == SortOrder.desc else min)(values)

    def _sorted(self, docs: list[_Doc], sort: list[Order]) -> list[_Doc]:
        # Stable sorts from the last key to the first; missing values go last in both orders.
        for order in reversed(sort):
            present = [d for d in docs if self._sort_value(d, order) is not None]
            missing = [d for d in docs if self._sort_value(d, order) is None]
            present.sort(
                key=lambda d, o=order: self._sort_key(self._sort_value(d, o)),
                reverse=order.order == SortOrder.desc,
            )
            docs = present + missing
        return docs

    @staticmethod
    def _sort_key(value: Any) -> tuple[int, Any]:
        if isinstance(value, (int, float)):
            return (0, value)
        return (1, str(value))

    # ------------------------------------------------------------------ search

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: str | None = None,
    ) -> SearchResponses:
        scored = await self._filtered(dataset, query, filter, sort)
        if sort:
            ordered = [doc for doc in self._sorted([doc for doc, _ in scored], sort)]
            scores = {doc["id"]: score for doc, score in scored}
            ranked = [(doc, scores[doc["id"]]) for doc in ordered]
        else:
            if user_id is not None:
                scored = [(doc, score * _user_shuffle_key(user_id, doc["id"])) for doc, score in scored]
            # Python's sort is stable: equal scores keep insertion order.
            ranked = sorted(scored, key=lambda item: -item[1])
        page = ranked[offset : offset + limit]
        return SearchResponses(
            items=[SearchResponseItem(record_id=doc["id"], score=score) for doc, score in page],
            total=len(ranked),
        )

    async def _filtered(
        self, dataset: Dataset, query: TextQuery | str | None, filter: Filter | None, sort: list[Order] | None
    ) -> list[tuple[_Doc, float]]:
        if isinstance(query, str):
            query = TextQuery(q=query)
        need_responses, need_suggestions = self._needs(filter, sort)
        docs = await self._load(
            dataset.id, fields=query is not None, responses=need_responses, suggestions=need_suggestions
        )
        matcher = _TextMatcher(query.q) if query is not None else None
        if query is not None and query.field and query.field not in await self._field_names(dataset.id):
            raise Exception(f"Field {query.field} not found in dataset {dataset.id}")
        scored = []
        for doc in docs:
            if filter is not None and not self._matches(doc, filter):
                continue
            score = 1.0
            if matcher is not None:
                fields = doc["fields"]
                text = _text_of(fields.get(query.field)) if query.field else _text_of(list(fields.values()))
                score = matcher.score(text)
                if score is None:
                    continue
            scored.append((doc, score))
        return scored

    @staticmethod
    async def _field_names(dataset_id: UUID) -> set[str]:
        async with AsyncSessionLocal() as db:
            return set(
                (await db.execute(select(Field.name).where(Field.dataset_id == dataset_id))).scalars().all()
            )

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        vector_value = value or record.vector_value_by_vector_settings(vector_settings)
        if not vector_value:
            raise ValueError("Cannot find a vector value to apply with provided info")
        if order == SimilarityOrder.least_similar:
            vector_value = [-x for x in vector_value]
        allowed = {doc["id"] for doc, _ in await self._filtered(dataset, query, filter, None)}
        async with AsyncSessionLocal() as db:
            rows = (
                await db.execute(
                    select(Vector.record_id, Vector.value).where(
                        Vector.vector_settings_id == vector_settings.id
                    )
                )
            ).all()
        norm = math.sqrt(sum(x * x for x in vector_value)) or 1.0
        items = []
        for row in rows:
            if row.record_id not in allowed or (record is not None and row.record_id == record.id):
                continue
            other = math.sqrt(sum(x * x for x in row.value)) or 1.0
            cosine = sum(a * b for a, b in zip(vector_value, row.value, strict=False)) / (norm * other)
            score = (1.0 + cosine) / 2.0  # Elasticsearch's cosine similarity score
            if threshold is None or score >= threshold:
                items.append(SearchResponseItem(record_id=row.record_id, score=score))
        items.sort(key=lambda item: -item.score)
        items = items[:max_results]
        return SearchResponses(items=items, total=len(items))

    # ------------------------------------------------------------------ metrics

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        docs = await self._load(dataset.id)
        return {"total": len(docs), **Counter(doc["status"] for doc in docs)}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        # The per-user count of that user's responses by status. (The Elasticsearch engine aggregates
        # the root-level copy of all responses of the records this user answered, which also counts
        # the other annotators' statuses; this is what its callers mean.)
        if dataset.is_draft:
            return {}
        docs = await self._load(dataset.id, responses=True)
        statuses = Counter(r["status"] for doc in docs for r in doc["responses"] if r["user_id"] == user.id)
        return {"total": sum(statuses.values()), **statuses}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        docs = await self._load(metadata_property.dataset_id)
        values = [v for doc in docs for v in _as_list(doc["metadata"].get(metadata_property.name))]
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(
                str(v)
                for doc in docs
                for v in set(map(str, _as_list(doc["metadata"].get(metadata_property.name))))
            )
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            return TermsMetrics(
                total=len(values), values=[TermsMetrics.TermCount(term=t, count=c) for t, c in ordered]
            )
        metrics_class = (
            IntegerMetadataMetrics
            if metadata_property.type == MetadataPropertyType.integer
            else FloatMetadataMetrics
        )
        numbers = [v for v in values if isinstance(v, (int, float))]
        return metrics_class(min=min(numbers, default=None), max=max(numbers, default=None))
