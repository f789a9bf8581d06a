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
    out = HERE / "generation_cache.jsonl"
    out.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8"
    )
    print(f"wrote {len(rows)} entries to {out}")


if __name__ == "__main__":
    main()
