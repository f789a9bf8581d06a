"""Generation backends behind one small interface: ``await backend.complete(messages) -> Completion``.

- ``OpenAIBackend``: any OpenAI-compatible ``/chat/completions`` API (OpenAI, vLLM serve, TGI,
  ``transformers serve``) over ``httpx.AsyncClient`` connections, one per concurrent slot; retries 408/409/429/5xx, timeouts,
  connection errors and unreadable bodies with exponential backoff and full jitter (``Retry-After``
  honoured). 401, 403 and 404 (a wrong key, model or URL) stop the stage at once (``EndpointError``,
  naming the endpoint and the model, never the key); another 4xx refuses that one request
  (``RequestRefused``: the item is rejected, the run goes on).
- ``TransformersBackend``: an in-process ``transformers`` model (greedy unless temperature > 0).
- ``VLLMBackend``: vLLM's offline ``LLM`` when vllm is installed.

Concurrency is bounded by the caller (``runner.generate``); token usage comes back on every
``Completion`` and ``Usage`` turns it into a cost with the config's price table.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from medinjection.core.config import GenerationBackendConfig

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Answers that say the endpoint, the model or the key is wrong: every other request would get the same.
FATAL_STATUS = {
    401: "the API key was refused: check ${key_env} (never printed)",
    403: "the API key may not use this model or endpoint: check ${key_env} and the model's access",
    404: "no such model or URL: check `model` and `base_url` (it usually ends in /v1)",
}


class GenerationError(RuntimeError):
    """A request that failed for good after its retries (429, 5xx, timeouts, unreadable bodies)."""


class RequestRefused(GenerationError):
    """The server refused this one request (a 4xx other than 401/403/404, e.g. a prompt too long)."""


class GenerationStageError(RuntimeError):
    """A generation stage stopped: its task is not marked complete, so a rerun retries its items."""


class EndpointError(GenerationStageError):
    """401, 403 or 404: the endpoint, the model or the key is wrong; nothing more is asked."""


class StageStopped(GenerationStageError):
    """Too many requests failed, or some failed and their items must be asked again on a rerun."""


def base_url(config: GenerationBackendConfig) -> str | None:
    """The configured endpoint: ``base_url``, else the variable ``base_url_env`` names; no default."""
    url = config.base_url or os.environ.get(config.base_url_env) or ""
    return url.rstrip("/") or None


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1


@dataclass
class Usage:
    """Requests, cache hits, tokens and estimated cost of a run."""

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_model: dict[str, list[int]] = field(default_factory=dict)

    def add(self, model: str, completion: Completion) -> None:
        self.requests += 1
        self.retries += completion.attempts - 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        tokens = self.by_model.setdefault(model, [0, 0])
        tokens[0] += completion.prompt_tokens
        tokens[1] += completion.completion_tokens

    def cost(self, prices: dict[str, Any]) -> float:
        total = 0.0
        for model, (prompt, completion) in self.by_model.items():
            price = prices.get(model)
            if price is not None:
                total += (prompt * price.input + completion * price.output) / 1e6
        return total

    def as_dict(self, prices: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in ("requests", "cache_hits", "failures", "retries", "prompt_tokens", "completion_tokens")
        }
        out["cost_usd"] = round(self.cost(prices or {}), 6)
        return out


class Backend(Protocol):
    model: str

    async def complete(self, messages: list[dict[str, str]]) -> Completion: ...

    async def aclose(self) -> None: ...


def backoff_delay(attempt: int, base: float, cap: float, retry_after: str | None = None) -> float:
    """Full-jitter exponential backoff (``Retry-After`` in seconds wins when the server sends it)."""
    if retry_after:
        try:
            return min(cap, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return random.uniform(0, min(cap, base * 2**attempt))


class OpenAIBackend:
    def __init__(self, config: GenerationBackendConfig):
        import httpx

        self.config = config
        self.model = config.model
        url = base_url(config)
        if url is None:
            raise ValueError(
                f"backend openai (model {config.model!r}) has no endpoint: set base_url in the config "
                f"or ${config.base_url_env} (for OpenAI itself: https://api.openai.com/v1)"
            )
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env)
        self._key = key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # One single-connection client per concurrent slot, handed out through a queue: httpcore's
        # pool scans all its connections on every request (about 5 ms per request at 32
        # connections, measured by benchmarks/generation.py: 100 requests/s), while a pool of one
        # connection costs nothing to scan. Keep-alive still reuses each slot's connection.
        self.base_url = url
        self.endpoint = f"{url}/chat/completions"
        self.clients = [
            httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(config.timeout_s),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            for _ in range(config.concurrency)
        ]
        self._free: asyncio.Queue | None = None

    async def post(self, body: dict[str, Any]):
        if self._free is None:
            self._free = asyncio.Queue()
            for client in self.clients:
                self._free.put_nowait(client)
        client = await self._free.get()
        try:
            return await client.post("/chat/completions", json=body)
        finally:
            self._free.put_nowait(client)

    def payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        cfg = self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        import httpx

        cfg = self.config
        body = self.payload(messages)
        last = ""
        for attempt in range(cfg.max_retries + 1):
            retry_after = None
            try:
                response = await self.post(body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    try:
                        data = response.json()
                        text = data["choices"][0]["message"]["content"]
                        if not isinstance(text, str):
                            raise TypeError("message content is not a string")
                    except (ValueError, KeyError, IndexError, TypeError) as err:
                        last = (
                            f"unreadable response body ({type(err).__name__}: {err}): {response.text[:200]!r}"
                        )
                    else:
                        usage = data.get("usage") or {}
                        return Completion(
                            text,
                            int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0),
                            attempt + 1,
                        )
                elif response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}: {redact(response.text[:200], self._key)}"
                    retry_after = response.headers.get("retry-after")
                elif response.status_code in FATAL_STATUS:
                    hint = FATAL_STATUS[response.status_code].replace("${key_env}", f"${cfg.api_key_env}")
                    raise EndpointError(
                        f"{self.endpoint} answered HTTP {response.status_code} for model {cfg.model!r}: "
                        f"{hint}. The server said: {redact(response.text[:300], self._key)!r}"
                    )
                else:
                    raise RequestRefused(
                        f"HTTP {response.status_code} from {self.endpoint} (model {cfg.model!r}), not "
                        f"retried: {redact(response.text[:500], self._key)}"
                    )
            if attempt < cfg.max_retries:
                await asyncio.sleep(backoff_delay(attempt, cfg.backoff_s, cfg.max_backoff_s, retry_after))
        raise GenerationError(
            f"gave up after {cfg.max_retries + 1} attempts at {self.endpoint}; last error: {last}"
        )

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class TransformersBackend:
    """An in-process ``transformers`` model; one generation at a time in a worker thread."""

    _lock = threading.Lock()

    def __init__(self, config: GenerationBackendConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.model = config.model
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.lm = AutoModelForCausalLM.from_pretrained(config.model)
        self.lm.eval()

    def _generate(self, messages: list[dict[str, str]]) -> Completion:
        import torch

        cfg = self.config
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_tokens, "do_sample": cfg.temperature > 0}
        if cfg.temperature > 0:
            kwargs["temperature"] = cfg.temperature
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
        with self._lock, torch.no_grad():
            output = self.lm.generate(**inputs, **kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new = output[0, prompt_len:]
        return Completion(self.tokenizer.decode(new, skip_special_tokens=True), prompt_len, int(new.shape[0]))

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        return await asyncio.to_thread(self._generate, messages)

    async def aclose(self) -> None:
        return None


class VLLMBackend:
    """vLLM's offline engine, in process (needs a GPU and ``pip install vllm``)."""

    def __init__(self, config: GenerationBackendConfig):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ImportError(
                "backend type 'vllm' needs vLLM: pip install vllm (on a machine with a GPU)"
            ) from None
        self.config = config
        self.model = config.model
        self.llm = LLM(model=config.model, seed=config.seed or 0)
        self.params = SamplingParams(
            temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
        )
        self._lock = threading.Lock()

    def _generate(self, messages: list[dict[str, str]]) -> Completion:
        with self._lock:
            out = self.llm.chat([messages], self.params, use_tqdm=False)[0]
        return Completion(out.outputs[0].text, len(out.prompt_token_ids), len(out.outputs[0].token_ids))

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        return await asyncio.to_thread(self._generate, messages)

    async def aclose(self) -> None:
        return None


BACKENDS = {"openai": OpenAIBackend, "transformers": TransformersBackend, "vllm": VLLMBackend}


def make_backend(config: GenerationBackendConfig) -> Backend:
    try:
        return BACKENDS[config.type](config)
    except KeyError:
        raise ValueError(f"unknown backend type {config.type!r}; known: {sorted(BACKENDS)}") from None


def request_params(config: GenerationBackendConfig) -> dict[str, Any]:
    """The parameters that change an answer (part of the cache key)."""
    return {
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "seed": config.seed,
        "json_mode": config.json_mode,
    }
