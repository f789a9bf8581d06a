"""Answers for a batch of prompts: from the cache, else from the backend (bounded concurrency), each
answer committed to the cache as soon as it arrives and before it is used.

A request that fails for good comes back as an ``Answer`` without text; the step decides what that
means for its task. Two things stop the batch at once, cancelling the requests in flight (the answers
received so far stay in the cache): an ``EndpointError`` (401/403/404) and a failure rate above
``max_failure_rate`` once ``RATE_AFTER`` requests have finished (``StageStopped``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from medinjection.core.config import GenerationBackendConfig
from medinjection.dataset_builders.generation.backends import (
    Backend,
    GenerationError,
    RequestRefused,
    StageStopped,
    Usage,
    make_backend,
    request_params,
)
from medinjection.dataset_builders.generation.cache import ResponseCache, cache_key, input_hash


@dataclass
class Request:
    messages: list[dict[str, str]]
    prompt_version: str
    key: str = ""
    in_hash: str = ""


RATE_AFTER = 20
"""Finished requests (answered or failed) before the failure rate can stop a run: not on one blip."""


@dataclass
class Answer:
    text: str | None  # None when the request failed for good
    error: str = ""
    cached: bool = False
    refused: bool = False  # the server refused this request (4xx): asking again gives the same


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A rough count (4 characters a token) for the dry-run estimate."""
    return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)


class Generator:
    """Holds the backend, the cache and one event loop for a whole step run."""

    def __init__(self, backend: GenerationBackendConfig, cache: ResponseCache, max_failure_rate: float = 1.0):
        self.config = backend
        self.cache = cache
        self.params = request_params(backend)
        self.max_failure_rate = max_failure_rate
        self.usage = Usage()
        self.refused = 0  # of usage.failures: refused by the server (4xx), not worth asking again
        self.last_error = ""
        self._backend: Backend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def keyed(self, request: Request) -> Request:
        request.in_hash = input_hash(request.messages)
        request.key = cache_key(self.config.model, request.prompt_version, self.params, request.in_hash)
        return request

    def misses(self, requests: list[Request]) -> list[Request]:
        keyed = [self.keyed(r) for r in requests]
        found = self.cache.contains_many([r.key for r in keyed])
        return [r for r in keyed if r.key not in found]

    def generate(self, requests: list[Request]) -> list[Answer]:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._generate([self.keyed(r) for r in requests]))

    async def _generate(self, requests: list[Request]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(requests)
        todo = []
        for index, request in enumerate(requests):
            hit = self.cache.get(request.key)
            if hit is not None:
                self.usage.cache_hits += 1
                answers[index] = Answer(hit["response"], cached=True)
            else:
                todo.append(index)
        if todo:
            if self._backend is None:
                self._backend = make_backend(self.config)
            semaphore = asyncio.Semaphore(self.config.concurrency)
            pending: dict[str, asyncio.Future] = {}  # the same prompt twice in a batch is asked once

            async def one(index: int) -> None:
                request = requests[index]
                if request.key in pending:
                    answers[index] = await pending[request.key]
                    return
                future = asyncio.get_running_loop().create_future()
                pending[request.key] = future
                async with semaphore:
                    try:
                        completion = await self._backend.complete(request.messages)
                    except GenerationError as err:
                        self.usage.failures += 1
                        self.refused += isinstance(err, RequestRefused)
                        self.last_error = str(err)
                        answer = Answer(None, error=str(err), refused=isinstance(err, RequestRefused))
                        future.set_result(answer)
                        answers[index] = answer
                        self._check_failure_rate()
                        return
                    else:
                        self.cache.put(
                            request.key,
                            model=self.config.model,
                            prompt_version=request.prompt_version,
                            params=self.params,
                            in_hash=request.in_hash,
                            response=completion.text,
                            prompt_tokens=completion.prompt_tokens,
                            completion_tokens=completion.completion_tokens,
                        )
                        self.usage.add(self.config.model, completion)
                        answer = Answer(completion.text)
                answers[index] = answer
                future.set_result(answer)

            tasks = [asyncio.ensure_future(one(i)) for i in todo]
            done, running = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            errors = [t.exception() for t in done]  # every one retrieved, not only the first
            error = next((err for err in errors if err is not None), None)
            if error is not None:  # EndpointError or StageStopped: ask nothing more
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                raise error
        return answers  # type: ignore[return-value]

    def _check_failure_rate(self) -> None:
        finished = self.usage.requests + self.usage.failures
        if finished >= RATE_AFTER and self.usage.failures > self.max_failure_rate * finished:
            raise StageStopped(
                f"{self.usage.failures} of {finished} requests to model {self.config.model!r} failed "
                f"for good, more than max_failure_rate {self.max_failure_rate:g}; stopped asking. "
                f"Last error: {self.last_error}"
            )

    def close(self) -> None:
        if self._loop is not None:
            if self._backend is not None:
                self._loop.run_until_complete(self._backend.aclose())
            self._loop.close()
            self._loop = None
        self._backend = None


def usage_summary(usage: Usage, config: GenerationBackendConfig) -> dict[str, Any]:
    return usage.as_dict(config.prices)
