"""vLLM as an optional backend for multiple-choice scoring (``--backend vllm``), on merged weights.

The base model is handed to vLLM as it is: a Hub id at its pinned ``model_revision`` (vLLM downloads
it), or a local folder; transformers does not load it. vLLM cannot load DoRA adapters, so an
adapter is first merged into the base with transformers (after the same check as ``--merge``: the
same decoded predictions on the first items), the merged model saved to a temporary folder that
vLLM loads and that is removed after scoring, and the transformers copies freed first. Each
``LLM`` is shut down (``VLLMEngine.close``) before the next model's. Decoding follows the protocol: greedy
(``temperature=0``), the token budgets of the protocol, ``allowed_token_ids`` for the constrained
predictions, stopping on the tokenizer's eos id only (``ignore_eos`` with ``stop_token_ids``), and
the letters-only variant as one constrained token followed by the continuation.

vLLM is not a dependency (``pip install vllm`` on a CUDA machine); without it this backend fails
with that instruction. It was not run in this project's CI (no GPU): the transformers backend is
the reference, and a vLLM run should be compared with it on a task before its figures are used.
"""

from __future__ import annotations

from collections.abc import Sequence

from medinjection.evaluation.engine import Branch, ChatEngine
from medinjection.evaluation.protocol import stop_token_id


class BackendUnavailable(RuntimeError):
    pass


def require_vllm():
    try:
        import vllm
    except ImportError as err:
        raise BackendUnavailable(
            "backend vllm needs vLLM, which is not installed: `pip install vllm` (CUDA machines), "
            "or use the default backend transformers"
        ) from err
    return vllm


class VLLMEngine(ChatEngine):
    """The ``Engine`` interface (``encode``, ``decode``, ``run``, ``generate_greedy``) over a vLLM ``LLM``."""

    def __init__(
        self,
        model: str,
        tokenizer,
        *,
        dtype: str = "auto",
        revision: str | None = None,
        tensor_parallel_size: int = 1,
    ):
        vllm = require_vllm()
        self.vllm = vllm
        self.tokenizer = tokenizer
        self.stop_id = stop_token_id(tokenizer)
        self.llm = vllm.LLM(
            model=model,
            revision=revision,
            tokenizer_revision=revision,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            seed=0,
        )

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back, so that the next model's ``LLM`` fits."""
        import contextlib
        import gc

        llm, self.llm = self.llm, None
        if llm is None:
            return
        shutdown = getattr(llm, "shutdown", None)  # recent vLLM
        if shutdown is None:  # the V1 engine: stop its core process
            shutdown = getattr(
                getattr(getattr(llm, "llm_engine", None), "engine_core", None), "shutdown", None
            )
        if shutdown is not None:
            with contextlib.suppress(Exception):  # a failing teardown must not hide the scores
                shutdown()
        del llm
        with contextlib.suppress(ImportError, AssertionError, RuntimeError):
            from vllm.distributed import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _params(self, budget: int, allowed: tuple[int, ...] | None):
        return self.vllm.SamplingParams(
            temperature=0.0,
            max_tokens=budget,
            allowed_token_ids=list(allowed) if allowed is not None else None,
            ignore_eos=True,
            stop_token_ids=[self.stop_id],
            skip_special_tokens=True,
        )

    def _generate(self, prompts: list[list[int]], params: list) -> list[list[int]]:
        requests = [self.vllm.inputs.TokensPrompt(prompt_token_ids=p) for p in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]

    def run(
        self, prompts: Sequence[Sequence[int]], branches: Sequence[Sequence[Branch]]
    ) -> list[list[list[int]]]:
        plain, two_step = [], []
        for i, item in enumerate(branches):
            for b, branch in enumerate(item):
                (plain if branch.first == branch.later else two_step).append((i, b))
        results: list[list[list[int]]] = [[[] for _ in item] for item in branches]
        if plain:
            outs = self._generate(
                [list(prompts[i]) for i, _ in plain],
                [self._params(branches[i][b].budget, branches[i][b].first) for i, b in plain],
            )
            for (i, b), ids in zip(plain, outs, strict=True):
                results[i][b] = ids
        if two_step:
            firsts = self._generate(
                [list(prompts[i]) for i, _ in two_step],
                [self._params(1, branches[i][b].first) for i, b in two_step],
            )
            more = [
                (k, (i, b))
                for k, (i, b) in enumerate(two_step)
                if branches[i][b].budget > 1 and firsts[k][-1] != self.stop_id
            ]
            rest = (
                self._generate(
                    [list(prompts[i]) + firsts[k] for k, (i, _) in more],
                    [self._params(branches[i][b].budget - 1, branches[i][b].later) for _, (i, b) in more],
                )
                if more
                else []
            )
            for k, (i, b) in enumerate(two_step):
                results[i][b] = list(firsts[k])
            for (_, (i, b)), ids in zip(more, rest, strict=True):
                results[i][b] += ids
        return results


def vllm_engine(model, todo, cache, resources, log):
    """``(vLLM engine, backend info, None)`` for one model; ``resources`` closes the engine after scoring.

    The base model is given to vLLM as it is (a Hub id at its pinned ``model_revision``, or a folder):
    transformers does not load it. vLLM cannot load DoRA adapters, so an adapter is merged with
    transformers after the merge check, saved to a temporary folder that is removed after scoring,
    and every transformers copy is freed before vLLM takes the GPU.
    """
    import tempfile
    from pathlib import Path

    from medinjection.evaluation.loading import adapter_on_base
    from medinjection.evaluation.models import backend_info

    require_vllm()  # before any weights are loaded
    args = cache.args
    model_settings = cache.model_settings()
    device = model_settings.device if model_settings.device != "auto" else "cuda"
    tokenizer = cache.tokenizer_only()
    info = {"name": "vllm", **backend_info(model_settings, device), "merged": False, "dora_caching": False}
    if model.adapter is None:
        local = Path(args.model_name_or_path).expanduser().is_dir()
        weights, revision = args.model_name_or_path, None if local else args.model_revision
        info["vllm_weights"] = "base"
    else:
        loaded, recorded = adapter_on_base(model, todo, cache, True, log)
        info.update(recorded)
        info["dtype"] = cache.base_info.get("dtype", info["dtype"])
        weights = resources.enter_context(tempfile.TemporaryDirectory(prefix="medinjection-vllm-"))
        loaded.model.save_pretrained(weights)
        tokenizer.save_pretrained(weights)
        del loaded  # the merged copy and the base: vLLM needs the memory
        cache.close()
        revision = None
        info["vllm_weights"] = "merged (temporary folder, removed after scoring)"
    engine = VLLMEngine(weights, tokenizer, dtype=info["dtype"], revision=revision)
    resources.callback(engine.close)
    return engine, info, None
