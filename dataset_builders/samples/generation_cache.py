"""Write generation_cache.jsonl (the demo's pre-filled response cache) from the hand-written answers
in generation_cache.answers.yaml, with the keys that the demo config's translate and synthesize
steps compute. Run it again after changing the answers, the samples or a prompt template:

    python dataset_builders/samples/generation_cache.py
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from medinjection.core.config import load_build_config
from medinjection.core.layout import Layout
from medinjection.dataset_builders.generate import make_step
from medinjection.dataset_builders.generation.backends import request_params
from medinjection.dataset_builders.generation.cache import cache_key, input_hash

HERE = Path(__file__).resolve().parent


def entry(backend, prompt_version: str, messages, item: str, response) -> dict:
    params = request_params(backend)
    in_hash = input_hash(messages)
    return {
        "key": cache_key(backend.model, prompt_version, params, in_hash),
        "model": backend.model,
        "prompt_version": prompt_version,
        "params": params,
        "input_hash": in_hash,
        "item": item,
        "response": response,
    }


def quality_rows(config, grades: dict, generation_rows: list[dict]) -> list[dict]:
    """The quality screen's grades of the demo's translated and synthetic items: the items exactly as the
    screen sees them come from a demo build run without the screen (its answers from the rows above)."""
    import tempfile

    import pyarrow.parquet as pq

    from medinjection.dataset_builders.build import build
    from medinjection.dataset_builders.steps.quality_screen import screen_request

    screen = config.quality_screen
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "generation.jsonl"
        seed.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in generation_rows), encoding="utf-8"
        )
        unscreened = config.model_copy(update={"quality_screen": None})
        for task in ("translate", "synthesize"):
            section = getattr(unscreened, task).model_copy(
                update={"cache_seed": [str(seed)], "cache": str(Path(tmp) / "c.sqlite")}
            )
            unscreened = unscreened.model_copy(update={task: section})
        root = build(unscreened, Path(tmp) / "demo", workers=1, progress=False)
        layout = Layout(root)
        records = [
            row
            for shard in layout.provenance_shards(screen.provenances)
            for row in pq.read_table(shard.path).to_pylist()
        ]
    missing = sorted(r["id"] for r in records if r["id"] not in grades)
    if missing:
        raise SystemExit(f"generation_cache.answers.yaml: no quality grade for {missing}")
    rows = []
    for record in sorted(records, key=lambda r: r["id"]):
        request = screen_request(record, screen.prompt_version)
        rows.append(
            entry(
                screen.backend, request.prompt_version, request.messages, record["id"], grades[record["id"]]
            )
        )
    return rows


def main() -> None:
    config = load_build_config(HERE.parent / "configs" / "demo.yaml")
    answers = yaml.safe_load((HERE / "generation_cache.answers.yaml").read_text(encoding="utf-8"))
    rows = []
    for task in ("translate", "synthesize"):
        step = make_step(config, task, Layout(Path("/nonexistent")))
        backend = step.config.backend
        params = request_params(backend)
        for job in step.iter_jobs():
            if task == "translate":
                answer = answers[task][job.record["id"]]
            else:
                answer = answers[task][job.extra["seed"]["source_id"]][job.record["type"]]
            in_hash = input_hash(job.request.messages)
            rows.append(
                {
                    "key": cache_key(backend.model, job.request.prompt_version, params, in_hash),
                    "model": backend.model,
                    "prompt_version": job.request.prompt_version,
                    "params": params,
                    "input_hash": in_hash,
                    "item": job.record["id"],
                    "response": answer,
                }
            )
    rows += quality_rows(config, answers.get("quality") or {}, rows)
    out = HERE / "generation_cache.jsonl"
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )
    print(f"wrote {len(rows)} entries to {out}")


if __name__ == "__main__":
    main()
