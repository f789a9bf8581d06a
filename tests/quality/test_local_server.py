"""The local Argilla server: clean start and stop, the real SDK against it, and its search engine.

The search engine is exercised through the REST endpoint the annotation UI calls
(``POST /api/v1/me/datasets/{id}/records/search``) as each annotator, with responses written
through the endpoint the UI uses to submit (``POST /api/v1/records/{id}/responses``).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.quality.connection import ArgillaConnectionError, connect
from medinjection.quality.server.manager import free_port, pid_alive, port_in_use

N_RECORDS = 10
TEXT = "Quel est le traitement de première intention de la maladie {i} chez l'adulte ?"


def provenance(i: int) -> str:
    return "native" if i % 2 else "translated"


@pytest.fixture(scope="module")
def review_dataset(argilla_server, argilla_client):
    """A dataset shaped like the review one, with 10 records logged twice."""
    import argilla as rg

    settings = rg.Settings(
        fields=[rg.TextField(name="question"), rg.TextField(name="answer")],
        questions=[
            rg.LabelQuestion(name="correct", labels=["correct", "incorrect", "unsure"]),
            rg.RatingQuestion(name="language_quality", values=[1, 2, 3, 4, 5]),
            rg.MultiLabelQuestion(
                name="error_types", labels=["factual_error", "bad_translation", "other"], required=False
            ),
            rg.TextQuestion(name="corrected_answer", required=False),
        ],
        metadata=[rg.TermsMetadataProperty(name="provenance"), rg.IntegerMetadataProperty(name="length")],
        distribution=rg.TaskDistribution(min_submitted=2),
    )
    dataset = rg.Dataset(
        name=f"server-test-{uuid.uuid4().hex[:8]}",
        workspace=argilla_server["workspace"],
        settings=settings,
        client=argilla_client,
    ).create()
    records = [
        rg.Record(
            id=f"r{i}",
            fields={"question": TEXT.format(i=i), "answer": "B"},
            metadata={"provenance": provenance(i), "length": 10 * i},
        )
        for i in range(N_RECORDS)
    ]
    dataset.records.log(records)
    dataset.records.log(records)  # the same ids again: updated, not duplicated
    return dataset


def as_user(argilla_server, username: str) -> dict:
    if username == "owner":
        return {"X-Argilla-Api-Key": argilla_server["owner_api_key"]}
    key = next(a["api_key"] for a in argilla_server["annotators"] if a["username"] == username)
    return {"X-Argilla-Api-Key": key}


def search(
    argilla_server, dataset, username: str, body: dict | None = None, offset: int = 0, limit: int = 50
) -> tuple[int, list[str]]:
    response = httpx.post(
        f"{argilla_server['url']}/api/v1/me/datasets/{dataset.id}/records/search",
        json=body or {},
        params={"offset": offset, "limit": limit, "include": "responses"},
        headers=as_user(argilla_server, username),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    return data["total"], [item["record"]["external_id"] for item in data["items"]]


def record_ids(argilla_server, dataset) -> dict[str, str]:
    """external id -> server record id."""
    response = httpx.get(
        f"{argilla_server['url']}/api/v1/datasets/{dataset.id}/records",
        params={"limit": 100},
        headers={"X-Argilla-Api-Key": argilla_server["owner_api_key"]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {item["external_id"]: item["id"] for item in response.json()["items"]}


def respond(
    argilla_server, record_id: str, username: str, status: str = "submitted", label: str = "correct"
) -> None:
    response = httpx.post(
        f"{argilla_server['url']}/api/v1/records/{record_id}/responses",
        json={"values": {"correct": {"value": label}, "language_quality": {"value": 4}}, "status": status},
        headers=as_user(argilla_server, username),
        timeout=30,
    )
    assert response.status_code == 201, response.text


def status_filter(*statuses: str, record_status: str | None = None) -> dict:
    filters = [
        {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": list(statuses)}
    ]
    if record_status:
        filters.append(
            {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": [record_status]}
        )
    return {"filters": {"and": filters}}


@pytest.fixture(scope="module")
def annotated(argilla_server, review_dataset):
    """annotator1 submits r0-r3; annotator2 submits r0-r1 and drafts r5; the owner submits r2.

    So r0, r1 and r2 are completed (two submitted responses each), r2 without annotator2.
    """
    ids = record_ids(argilla_server, review_dataset)
    for i in range(4):
        respond(argilla_server, ids[f"r{i}"], "annotator1")
    for i in range(2):
        respond(argilla_server, ids[f"r{i}"], "annotator2", label="incorrect")
    respond(argilla_server, ids["r5"], "annotator2", status="draft")
    respond(argilla_server, ids["r2"], "owner")
    return ids


# ---------------------------------------------------------------- start, stop, CLI


def test_cli_start_status_stop_leaves_nothing_behind(argilla_server, tmp_path):
    # argilla_server first: it installs the server venv when missing.
    runner = CliRunner()
    folder = tmp_path / "instance"
    started = runner.invoke(
        app, ["quality", "server", "start", "--instance-dir", str(folder), "--annotators", "1"]
    )
    try:
        assert started.exit_code == 0, started.output
        assert "export ARGILLA_API_URL=http://127.0.0.1:" in started.output
        state = json.loads((folder / "state.json").read_text())
        assert (folder / "state.json").stat().st_mode & 0o077 == 0  # credentials inside: owner-only
        assert [a["username"] for a in state["annotators"]] == ["annotator1"]
        assert f"export ARGILLA_API_KEY={state['owner_api_key']}" in started.output
        assert all(pid_alive(pid) for pid in state["pids"].values())
        assert port_in_use(state["port"]) and port_in_use(state["redis_port"])
        status = runner.invoke(app, ["quality", "server", "status", "--instance-dir", str(folder)])
        assert status.exit_code == 0 and status.output.startswith("running:"), status.output
        again = runner.invoke(app, ["quality", "server", "start", "--instance-dir", str(folder)])
        assert again.exit_code == 1 and "already running" in again.output
    finally:
        stopped = runner.invoke(app, ["quality", "server", "stop", "--instance-dir", str(folder)])
    assert stopped.exit_code == 0, stopped.output
    assert not any(pid_alive(pid) for pid in state["pids"].values())
    assert not port_in_use(state["port"]) and not port_in_use(state["redis_port"])
    assert not (folder / "state.json").exists()
    status = runner.invoke(app, ["quality", "server", "status", "--instance-dir", str(folder)])
    assert status.exit_code == 1 and "not running" in status.output


def test_session_server_answers_with_its_search_engine(argilla_server):
    response = httpx.get(
        f"{argilla_server['url']}/api/v1/status",
        headers={"X-Argilla-Api-Key": argilla_server["owner_api_key"]},
    )
    assert response.status_code == 200
    assert response.json()["version"] == "2.8.0"
    assert response.json()["search_engine"]["name"] == "medinjection-sql"
    assert httpx.get(argilla_server["url"] + "/").status_code == 200  # the web UI


# ---------------------------------------------------------------- connect()


def test_connect_names_the_missing_or_wrong_variable(argilla_server, monkeypatch):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(
        ArgillaConnectionError, match="ARGILLA_API_URL is not set.*medinjection quality server start"
    ):
        connect()
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    with pytest.raises(ArgillaConnectionError, match="ARGILLA_API_KEY is not set"):
        connect()
    monkeypatch.setenv("ARGILLA_API_KEY", "not-a-key-of-this-server")
    with pytest.raises(ArgillaConnectionError, match="ARGILLA_API_KEY is refused"):
        connect()
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    assert connect().me.username == "owner"
    monkeypatch.setenv("ARGILLA_API_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ArgillaConnectionError, match="cannot reach an Argilla server at ARGILLA_API_URL"):
        connect(timeout=5, retries=0)


# ---------------------------------------------------------------- the SDK loop


def test_sdk_logs_twice_without_duplicates_and_reads_two_annotators_back(
    argilla_server, argilla_client, review_dataset
):
    import argilla as rg

    assert len(review_dataset.records.to_list(flatten=True)) == N_RECORDS
    users = {a["username"]: argilla_client.users(a["username"]) for a in argilla_server["annotators"]}
    first, second = users["annotator1"], users["annotator2"]
    # The owner logs the verdicts of both annotators on r6 and r7; they disagree on r7.
    review_dataset.records.log(
        [
            rg.Record(
                id=f"r{i}",
                fields={"question": TEXT.format(i=i), "answer": "B"},
                metadata={"provenance": provenance(i), "length": 10 * i},
                responses=[
                    rg.Response("correct", "correct", user_id=first.id, status="submitted"),
                    rg.Response("language_quality", 5, user_id=first.id, status="submitted"),
                    rg.Response("error_types", ["other"], user_id=first.id, status="submitted"),
                    rg.Response("correct", label, user_id=second.id, status="submitted"),
                    rg.Response("language_quality", 3, user_id=second.id, status="submitted"),
                    rg.Response("corrected_answer", "C", user_id=second.id, status="submitted"),
                ],
            )
            for i, label in ((6, "correct"), (7, "incorrect"))
        ]
    )
    rows = {row["id"]: row for row in review_dataset.records.to_list(flatten=True)}
    assert len(rows) == N_RECORDS
    for rid, labels in (("r6", ["correct", "correct"]), ("r7", ["correct", "incorrect"])):
        row = rows[rid]
        by_user = dict(zip(row["correct.responses.users"], row["correct.responses"], strict=True))
        assert by_user == {str(first.id): labels[0], str(second.id): labels[1]}
        assert sorted(row["language_quality.responses"]) == [3, 5]
        assert row["error_types.responses"] == [["other"]]
        assert row["corrected_answer.responses"] == ["C"]
        assert row["status"] == "completed"  # two submitted responses = min_submitted
        assert row["provenance"] == "native" if rid == "r7" else "translated"
    assert rows["r8"]["status"] == "pending"


# ---------------------------------------------------------------- the search engine, through the UI's endpoint


def test_listing_paginates_in_a_stable_order_per_user(argilla_server, review_dataset):
    total, everything = search(argilla_server, review_dataset, "annotator1")
    assert total == N_RECORDS and sorted(everything) == sorted(f"r{i}" for i in range(N_RECORDS))
    pages = [
        search(argilla_server, review_dataset, "annotator1", offset=offset, limit=4) for offset in (0, 4, 8)
    ]
    assert [total for total, _ in pages] == [N_RECORDS] * 3
    assert [len(ids) for _, ids in pages] == [4, 4, 2]
    assert [rid for _, ids in pages for rid in ids] == everything  # same order, page after page
    assert search(argilla_server, review_dataset, "annotator1")[1] == everything
    # Each annotator gets their own order (seeded by the user id), so they do not all start on the same records.
    assert search(argilla_server, review_dataset, "annotator2")[1] != everything


def test_pending_submitted_and_draft_filters_are_per_user(argilla_server, review_dataset, annotated):
    done1 = {"r0", "r1", "r2", "r3"}
    total, ids = search(argilla_server, review_dataset, "annotator1", status_filter("submitted"))
    # annotated r0-r3 here; r6 and r7 may also carry annotator1's responses when the SDK test ran first
    assert done1 <= set(ids) and set(ids) - done1 <= {"r6", "r7"} and total == len(ids)
    _, pending1 = search(argilla_server, review_dataset, "annotator1", status_filter("pending"))
    assert set(pending1).isdisjoint(ids) and set(pending1) | set(ids) == {f"r{i}" for i in range(N_RECORDS)}
    _, draft2 = search(argilla_server, review_dataset, "annotator2", status_filter("draft"))
    assert draft2 == ["r5"]
    _, pending2 = search(argilla_server, review_dataset, "annotator2", status_filter("pending"))
    assert {"r0", "r1", "r5"}.isdisjoint(pending2) and {"r2", "r3", "r4", "r8", "r9"} <= set(pending2)
    # The UI's queue: no response from me yet and the record still needs annotators.
    _, queue = search(
        argilla_server, review_dataset, "annotator2", status_filter("pending", record_status="pending")
    )
    assert set(queue) == set(pending2) - {"r2"}
    _, either = search(argilla_server, review_dataset, "annotator2", status_filter("pending", "draft"))
    assert set(either) == set(pending2) | {"r5"}
    # The UI's progress bar for each annotator, and the dataset's progress.
    headers = as_user(argilla_server, "annotator2")
    metrics = httpx.get(
        f"{argilla_server['url']}/api/v1/me/datasets/{review_dataset.id}/metrics", headers=headers
    ).json()
    assert metrics["responses"]["draft"] == 1 and metrics["responses"]["pending"] == len(pending2)
    progress = httpx.get(
        f"{argilla_server['url']}/api/v1/datasets/{review_dataset.id}/progress",
        headers={"X-Argilla-Api-Key": argilla_server["owner_api_key"]},
    ).json()
    assert progress["total"] == N_RECORDS and progress["completed"] + progress["pending"] == N_RECORDS
    assert progress["completed"] >= 3


def test_metadata_filters_sort_text_query_and_metrics(argilla_server, review_dataset, annotated):
    terms = {
        "type": "terms",
        "scope": {"entity": "metadata", "metadata_property": "provenance"},
        "values": ["native"],
    }
    total, ids = search(argilla_server, review_dataset, "annotator1", {"filters": {"and": [terms]}})
    assert total == 5 and set(ids) == {"r1", "r3", "r5", "r7", "r9"}
    # Combined with the per-user pending filter (annotator1 submitted r1 and r3).
    body = status_filter("pending")
    body["filters"]["and"].append(terms)
    assert (
        {"r5", "r9"}
        <= set(search(argilla_server, review_dataset, "annotator1", body)[1])
        <= {"r5", "r7", "r9"}
    )
    ranged = {
        "type": "range",
        "scope": {"entity": "metadata", "metadata_property": "length"},
        "ge": 20,
        "le": 50,
    }
    assert set(search(argilla_server, review_dataset, "annotator1", {"filters": {"and": [ranged]}})[1]) == {
        "r2",
        "r3",
        "r4",
        "r5",
    }
    by_length = {"sort": [{"scope": {"entity": "metadata", "metadata_property": "length"}, "order": "desc"}]}
    assert search(argilla_server, review_dataset, "annotator1", by_length)[1] == [
        f"r{i}" for i in reversed(range(N_RECORDS))
    ]
    assert search(argilla_server, review_dataset, "annotator1", {"query": {"text": {"q": "maladie 3"}}})[
        1
    ] == ["r3"]
    assert (
        search(
            argilla_server,
            review_dataset,
            "annotator1",
            {"query": {"text": {"q": "traitement", "field": "question"}}},
        )[0]
        == N_RECORDS
    )
    assert (
        search(
            argilla_server,
            review_dataset,
            "annotator1",
            {"query": {"text": {"q": "traitement", "field": "answer"}}},
        )[0]
        == 0
    )
    assert (
        search(argilla_server, review_dataset, "annotator1", {"query": {"text": {"q": "premi* -maladie"}}})[0]
        == 0
    )
    headers = as_user(argilla_server, "annotator1")
    props = httpx.get(
        f"{argilla_server['url']}/api/v1/me/datasets/{review_dataset.id}/metadata-properties", headers=headers
    ).json()
    metrics = {
        p["name"]: httpx.get(
            f"{argilla_server['url']}/api/v1/metadata-properties/{p['id']}/metrics", headers=headers
        ).json()
        for p in props["items"]
    }
    assert metrics["provenance"]["total"] == N_RECORDS
    assert {v["term"]: v["count"] for v in metrics["provenance"]["values"]} == {"native": 5, "translated": 5}
    assert (metrics["length"]["min"], metrics["length"]["max"]) == (0, 90)


def test_worker_runs_the_servers_background_jobs(argilla_server, review_dataset):
    # Any dataset update enqueues the job that recomputes record statuses; the rq worker must run it.
    log = argilla_server["server"].instance_dir / "logs" / "worker.log"
    before = log.read_text(errors="replace").count("Job OK")
    response = httpx.patch(
        f"{argilla_server['url']}/api/v1/datasets/{review_dataset.id}",
        json={"guidelines": "Relire chaque question comme un interne."},
        headers={"X-Argilla-Api-Key": argilla_server["owner_api_key"]},
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while log.read_text(errors="replace").count("Job OK") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log.read_text(errors="replace").count("Job OK") > before, log.read_text(errors="replace")[-2000:]


def test_suggestion_and_response_value_filters_and_response_sort(argilla_server, review_dataset, annotated):
    import argilla as rg

    review_dataset.records.log(
        [
            rg.Record(
                id=f"r{i}",
                fields={"question": TEXT.format(i=i), "answer": "B"},
                metadata={"provenance": provenance(i), "length": 10 * i},
                suggestions=[rg.Suggestion("correct", label, score=score, agent="judge")],
            )
            for i, label, score in ((4, "incorrect", 0.9), (8, "incorrect", 0.4), (9, "correct", 0.8))
        ]
    )
    suggested = {
        "type": "terms",
        "scope": {"entity": "suggestion", "question": "correct", "property": "value"},
        "values": ["incorrect"],
    }
    assert set(
        search(argilla_server, review_dataset, "annotator1", {"filters": {"and": [suggested]}})[1]
    ) == {"r4", "r8"}
    confident = {
        "type": "range",
        "scope": {"entity": "suggestion", "question": "correct", "property": "score"},
        "ge": 0.5,
    }
    assert set(
        search(argilla_server, review_dataset, "annotator1", {"filters": {"and": [confident]}})[1]
    ) == {"r4", "r9"}
    # A response-value filter in /me search looks at the searching user's own responses only.
    said_incorrect = {
        "type": "terms",
        "scope": {"entity": "response", "question": "correct"},
        "values": ["incorrect"],
    }
    assert (
        search(argilla_server, review_dataset, "annotator1", {"filters": {"and": [said_incorrect]}})[1] == []
    )
    by_annotator2 = set(
        search(argilla_server, review_dataset, "annotator2", {"filters": {"and": [said_incorrect]}})[1]
    )
    assert {"r0", "r1"} <= by_annotator2 <= {"r0", "r1", "r7"}  # r7: when the SDK test ran first
    # Sort on the user's own rating: annotator2 rated r0, r1 (submitted) and r5 (draft) 4, r6 and r7 3.
    by_rating = {"sort": [{"scope": {"entity": "response", "question": "language_quality"}, "order": "desc"}]}
    ranked = search(argilla_server, review_dataset, "annotator2", by_rating)[1]
    assert set(ranked[:3]) == {"r0", "r1", "r5"} and len(ranked) == N_RECORDS
    by_status = {"sort": [{"scope": {"entity": "record", "property": "status"}, "order": "asc"}]}
    statuses = [
        item["record"]["status"]
        for item in httpx.post(
            f"{argilla_server['url']}/api/v1/me/datasets/{review_dataset.id}/records/search",
            json=by_status,
            headers=as_user(argilla_server, "annotator1"),
        ).json()["items"]
    ]
    assert statuses == sorted(statuses) and statuses[0] == "completed" and statuses[-1] == "pending"
