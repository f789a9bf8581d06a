"""The web UI of the local Argilla, driven by Playwright with Debian's chromium (no browser download).

An annotator signs in, opens the review dataset from the home page, answers the record the UI shows
(from its pending queue, served by the ``medinjection-sql`` search engine) and submits; the pull
(``medinjection.quality.review.pull_records``) then sees that response. On failure a screenshot is
left in the test's temporary folder (its path is in the failure message).
"""

from __future__ import annotations

import time
import uuid

from medinjection.core.schema import new_record

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def review_rows(n: int) -> list[dict]:
    return [
        new_record(
            source="browser_test",
            source_id=f"q{i}",
            source_split="train",
            provenance="translated",
            origin="test",
            type="MCQU",
            instruction=f"Quel antibiotique est indiqué en première intention dans le cas clinique numéro {i} ?",
            options=[{"letter": "A", "text": "Amoxicilline"}, {"letter": "B", "text": "Paracétamol"}],
            correct_letters=["A"],
            answer="A",
            language="fr",
            language_score=0.99,
            generation={"model": "m", "prompt_version": "v1", "seed_id": ""},
            original={
                "language": "en",
                "instruction": f"Which antibiotic is first-line in clinical case {i}?",
                "context": "",
                "options": [{"letter": "A", "text": "Amoxicillin"}, {"letter": "B", "text": "Paracetamol"}],
                "answer": "A",
            },
            messages=[],
        )
        for i in range(n)
    ]


def test_annotator_submits_a_response_in_the_web_ui(argilla_server, argilla_client, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from medinjection.quality.review import pull_records, push_review

    name, workspace = f"browser-{uuid.uuid4().hex[:8]}", argilla_server["workspace"]
    push_review(argilla_client, review_rows(3), name, workspace)
    annotator = argilla_server["annotators"][0]
    url = argilla_server["url"]
    screenshot = tmp_path / "browser-failure.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{url}/sign-in")
            page.get_by_label("Username").fill(annotator["username"])
            page.get_by_label("Password").fill(annotator["password"])
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text(name, exact=True).click()  # the home page lists the workspace's datasets
            submit = page.get_by_role("button", name="Submit")
            submit.wait_for()
            assert "annotation-mode" in page.url and "status=pending" in page.url
            shown = page.get_by_text("Quel antibiotique est indiqué").first.inner_text()
            question = page.locator(".wrapper", has=page.locator('[aria-label="Is the answer correct?"]'))
            question.get_by_text("correct", exact=True).click()
            page.locator("label[for=language_quality_4]").click()
            submit.click()
            # The UI moves on to the next pending record and counts the submission.
            page.get_by_text(shown, exact=True).wait_for(state="detached")
        except Exception as err:
            page.screenshot(path=str(screenshot), full_page=True)
            raise AssertionError(f"browser step failed ({err}); screenshot: {screenshot}") from err
        finally:
            browser.close()

    deadline = time.monotonic() + 15
    while True:
        records = pull_records(argilla_client, name, workspace)
        answered = [
            r for r in records if any(resp["user"] == annotator["username"] for resp in r["responses"])
        ]
        if answered or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(answered) == 1, records
    (response,) = [resp for resp in answered[0]["responses"] if resp["user"] == annotator["username"]]
    assert response["status"] == "submitted"
    assert response["values"] == {"answer_correct": "correct", "language_quality": 4}
    assert shown.strip() in answered[0]["fields"]["question"]
