"""The project's fault-injecting server (tests/generation/gen_fault_server.py) answering judge prompts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "generation"))

from gen_fault_server import FaultServer, prompt_hash  # noqa: E402


class JudgeServer(FaultServer):
    """The fault server answering judge prompts: "1" when the candidate is the ground truth, else "0".

    Faults by item number (the case number "du cas N" in the question; none without one):
    1 -> unparseable reply, 2 -> 429 then ok, 3 -> 500 for ever (failed), 5 -> 500 once then ok.
    """

    PLANS = {1: ["badjson"], 2: ["429", "ok"], 3: ["500"], 5: ["500", "ok"]}

    def __init__(self):
        super().__init__(plan=self.choose)
        self.numbers: dict[str, int] = {}
        self.seen: list[list[dict]] = []  # the messages of every request, in arrival order

    def choose(self, key: str, attempt: int) -> str:
        plan = self.PLANS.get(self.numbers.get(key, -1), ["ok"])
        return plan[min(attempt, len(plan) - 1)]

    async def _answer(self, body):
        messages = body.get("messages") or []
        self.seen.append(messages)
        key = prompt_hash(messages)
        user = messages[-1]["content"]
        number = re.search(r"du cas (\d+)", user)
        self.numbers[key] = int(number.group(1)) if number else -1
        status, payload, extra = await super()._answer(body)
        if self.choose(key, self.requests[key] - 1) == "ok":
            candidate = re.search(r"Candidate_answer: (.*)\nGround_truth: ", user, re.S).group(1)
            truth = user.split("Ground_truth: ", 1)[1]
            reply = json.loads(payload)
            verdict = "1" if candidate == truth else "0"
            if "Grade" in messages[0]["content"]:
                verdict = "5" if candidate == truth else "2"
            reply["choices"][0]["message"]["content"] = verdict
            payload = json.dumps(reply)
        return status, payload, extra
