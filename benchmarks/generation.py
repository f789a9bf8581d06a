"""Throughput of the generation client and of the response cache (issue 4).

    python benchmarks/generation.py                       # 2,000 requests per concurrency, 500K cache
    python benchmarks/generation.py --requests 5000 --cache-entries 500000 --lookups 200000

1. Requests per second through ``Generator.generate`` (the real client: pooled ``httpx.AsyncClient``,
   bounded concurrency, retries armed, every answer written to the SQLite cache before it is used)
   against a local OpenAI-compatible server that answers at once. The server runs in its own
   process (raw asyncio, HTTP/1.1 keep-alive) so that it does not share the client's interpreter;
   each concurrency level gets distinct prompts, so every request is a cache miss and goes out.
2. Cache lookups per second (``ResponseCache.get`` on random existing keys) on a cache filled with
   ``--cache-entries`` entries by ``put_many``.

The last line is one JSON object: requests_per_s_c1, requests_per_s_c32, cache_lookups_per_s (and
the settings and sizes that produced them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import random
import socket
import tempfile
import time
from pathlib import Path

from medinjection.core.config import GenerationBackendConfig
from medinjection.dataset_builders.generation.cache import ResponseCache, cache_key, input_hash
from medinjection.dataset_builders.generation.runner import Generator, Request

ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": '{"instruction": "Quel est le traitement ?"}'},
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
    }
).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def serve(port: int, ready) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests_per_s(port: int, concurrency: int, n: int, folder: Path) -> float:
    config = GenerationBackendConfig(
        type="openai",
        model="bench",
        base_url=f"http://127.0.0.1:{port}/v1",
        concurrency=concurrency,
        timeout_s=30,
        max_retries=2,
    )
    cache = ResponseCache(folder / f"cache-c{concurrency}.sqlite")
    generator = Generator(config, cache)
    requests = [
        Request(
            [
                {"role": "system", "content": "Tu es un traducteur médical."},
                {
                    "role": "user",
                    "content": f"Traduis en français (c{concurrency}, item {i}) : What is the treatment?",
                },
            ],
            "v1",
        )
        for i in range(n)
    ]
    generator.generate(requests[:concurrency])  # warm the connection pool
    start = time.perf_counter()
    answers = generator.generate(requests[concurrency:])
    elapsed = time.perf_counter() - start
    generator.close()
    failed = sum(a.text is None for a in answers)
    cached = sum(a.cached for a in answers)
    if failed or cached:
        raise SystemExit(
            f"concurrency {concurrency}: {failed} failed and {cached} cached answers out of {len(answers)}"
        )
    if len(cache) != n:
        raise SystemExit(f"concurrency {concurrency}: the cache holds {len(cache)} answers, expected {n}")
    cache.close()
    return len(answers) / elapsed


def cache_lookups_per_s(entries: int, lookups: int, folder: Path, seed: int) -> tuple[float, float]:
    cache = ResponseCache(folder / "big.sqlite")
    params = {"temperature": 0.0, "max_tokens": 2048}
    hashes = [input_hash([{"role": "user", "content": f"question {i}"}]) for i in range(entries)]
    start = time.perf_counter()
    cache.put_many(
        {
            "model": "bench",
            "prompt_version": "v1",
            "params": params,
            "input_hash": h,
            "response": '{"instruction": "Quel est le traitement de première intention ?", "answer": "A"}',
        }
        for h in hashes
    )
    fill_s = time.perf_counter() - start
    rng = random.Random(seed)
    keys = [cache_key("bench", "v1", params, hashes[rng.randrange(entries)]) for _ in range(lookups)]
    start = time.perf_counter()
    found = sum(cache.get(key) is not None for key in keys)
    elapsed = time.perf_counter() - start
    if found != lookups:
        raise SystemExit(f"cache lookups: {lookups - found} of {lookups} existing keys were not found")
    cache.close()
    return lookups / elapsed, fill_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--cache-entries", type=int, default=500_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, ready), daemon=True)
    server.start()
    if not ready.wait(30):
        raise SystemExit("the local server did not start")
    results: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for concurrency in (1, 32):
                rate = requests_per_s(port, concurrency, args.requests + concurrency, folder)
                results[f"requests_per_s_c{concurrency}"] = round(rate, 1)
                print(f"concurrency {concurrency}: {rate:,.0f} requests/s", flush=True)
            lookups, fill_s = cache_lookups_per_s(args.cache_entries, args.lookups, folder, args.seed)
            print(
                f"cache of {args.cache_entries:,} entries (filled in {fill_s:.1f} s): {lookups:,.0f} lookups/s"
            )
    finally:
        server.terminate()
        server.join(10)
    results.update(
        cache_lookups_per_s=round(lookups, 1),
        cache_entries=args.cache_entries,
        cache_fill_s=round(fill_s, 2),
        requests=args.requests,
        lookups=args.lookups,
        machine=f"{platform.machine()}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}",
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
