"""A local OpenAI-compatible HTTP server for the tests (raw asyncio, in a thread): it answers
translation prompts with French JSON it builds from the item, injects faults (429, 500, timeouts,
unreadable bodies, invalid JSON, changed letters; 401/403/404 as a wrong key, model or URL would get,
echoing the key it was sent as some servers do; 400 for one refused request) by plan, and counts
every request per prompt."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable

FRENCH = (
    "Le patient présente une douleur thoracique et une fièvre depuis trois jours, sans antécédent notable. "
    "L'examen clinique retrouve une tension artérielle normale et une fréquence cardiaque élevée. "
)


def french_like(n_chars: int, tag: str = "") -> str:
    """French text of about ``n_chars`` characters (at least one sentence)."""
    text = (tag + " " if tag else "") + FRENCH * (1 + n_chars // len(FRENCH))
    return text[: max(n_chars, 12)].rsplit(" ", 1)[0].strip()


def translate_item(item: dict, tag: str = "") -> dict:
    """A 'translation' of an English item: French filler of the same lengths, letters and key kept."""
    out = {
        "type": item["type"],
        "instruction": french_like(len(item["instruction"]), tag),
        "context": french_like(len(item["context"])) if item.get("context") else "",
        "options": [
            {"letter": o["letter"], "text": french_like(len(o["text"]))} for o in item.get("options") or []
        ],
        "correct_letters": list(item.get("correct_letters") or []),
        "answer": item["answer"] if item.get("options") else french_like(len(item["answer"])),
    }
    return out


_ITEM = re.compile(r"Item \(JSON\) :\n(.*)\n\nRéponds", re.S)


def item_of(messages: list[dict]) -> dict | None:
    match = _ITEM.search(messages[-1]["content"])
    return json.loads(match.group(1)) if match else None


def prompt_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


# A plan maps (prompt hash, attempt number from 0) to an action.
Plan = Callable[[str, int], str]
ACTIONS = (
    "ok",
    "429",
    "500",
    "timeout",
    "badbody",
    "badjson",
    "wrongletters",
    "fewer_options",
    "401",
    "403",
    "404",
    "400",
)
REFUSALS = {
    "401": "401 Unauthorized",
    "403": "403 Forbidden",
    "404": "404 Not Found",
    "400": "400 Bad Request",
}


def no_faults(_h: str, _attempt: int) -> str:
    return "ok"


class FaultServer:
    def __init__(self, plan: Plan = no_faults, delay_s: float = 0.0, timeout_sleep_s: float = 5.0):
        self.plan = plan
        self.delay_s = delay_s
        self.timeout_sleep_s = timeout_sleep_s
        self.requests: Counter = Counter()  # every request, per prompt hash
        self.answered: Counter = Counter()  # 200 answers with content, per prompt hash
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            asyncio.get_running_loop().stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                authorization = ""
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                    if line.lower().startswith("authorization:"):
                        authorization = line.split(":", 1)[1].strip()
                body = json.loads(await reader.readexactly(length)) if length else {}
                body["_authorization"] = authorization
                status, payload, extra = await self._answer(body)
                data = payload.encode()
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _answer(self, body: dict) -> tuple[str, str, str]:
        messages = body.get("messages") or []
        key = prompt_hash(messages)
        with self._lock:
            attempt = self.requests[key]
            self.requests[key] += 1
        action = self.plan(key, attempt)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if action == "429":
            return "429 Too Many Requests", '{"error": "rate limited"}', "Retry-After: 0\r\n"
        if action == "500":
            return "500 Internal Server Error", '{"error": "boom"}', ""
        if action in REFUSALS:  # like OpenAI's 401, the body quotes the key it was sent
            message = f"refused ({action}); key provided: {body.get('_authorization', '')}"
            return REFUSALS[action], json.dumps({"error": {"message": message}}), ""
        if action == "timeout":
            await asyncio.sleep(self.timeout_sleep_s)
        if action == "badbody":
            return "200 OK", '{"choices": [{"message": ', ""
        item = item_of(messages)
        if action == "badjson" or item is None:
            content = "Voici la traduction : {instruction: incomplète"
        else:
            out = translate_item(item, tag=f"[{key[:6]}]")
            if action == "wrongletters" and out["options"]:
                out["correct_letters"] = ["D"] if out["correct_letters"] != ["D"] else ["A"]
            if action == "fewer_options" and out["options"]:
                out["options"] = out["options"][:-1]
            content = json.dumps(out, ensure_ascii=False)
        with self._lock:
            self.answered[key] += 1
        reply = {
            "id": "x",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        }
        return "200 OK", json.dumps(reply, ensure_ascii=False), ""


class NumberedServer(FaultServer):
    """A ``FaultServer`` whose plan sees the item number of the ``write_mmlu_csv`` items ("item
    number N"): ``plan(number, attempt)``; ``numbers`` maps each prompt hash seen to its number."""

    def __init__(self, plan: Callable[[int, int], str], **kwargs):
        super().__init__(plan=lambda key, attempt: plan(self.numbers.get(key, -1), attempt), **kwargs)
        self.numbers: dict[str, int] = {}

    async def _answer(self, body: dict) -> tuple[str, str, str]:
        messages = body.get("messages") or []
        item = item_of(messages)
        if item is not None and "item number " in item["instruction"]:
            number = int(item["instruction"].split("item number ")[1].split()[0])
            self.numbers[prompt_hash(messages)] = number
        return await super()._answer(body)

    def asked(self, since: dict | None = None) -> set[int]:
        """Item numbers requested (since the ``dict(self.requests)`` snapshot ``since``)."""
        since = since or {}
        return {
            self.numbers[k] for k, n in self.requests.items() if n > since.get(k, 0) and k in self.numbers
        }
