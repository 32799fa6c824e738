"""GPU: rollout tokens/s through our generator (a Ray actor around `VLLMEngine`) divided by raw
`vllm.LLM.generate` on the same prompts and settings, and trainer -> generator weight-sync
seconds next to the device's own copy bandwidth. Qwen2.5-sized models, random weights.

    python benchmarks/gpu_rollout_sync.py raw  --size 0.5b     # one JSON line each
    python benchmarks/gpu_rollout_sync.py ours --size 0.5b
    python benchmarks/gpu_rollout_sync.py compare --size 0.5b --repeats 3   # both, interleaved
    python benchmarks/gpu_rollout_sync.py seeds|logprobs --size 0.5b --prompts 256   # raw, two settings interleaved
    python benchmarks/gpu_rollout_sync.py sync --size 1.5b

Each mode runs in its own process (a vLLM engine does not give its GPU memory back reliably).
`compare` starts one engine, inside our generator actor, and alternates the two calls on it:
raw `LLM.generate` run in the actor (one `SamplingParams`, only a token count returned) and our
`Generator.generate` (per-prompt seeds, `Completion` objects back to the driver), so the ratio is
our generator's overhead on the same engine, free of engine-to-engine variance.
Fixed lengths: random prompts of --prompt-len tokens, --response-len new tokens (ignore_eos),
temperature 1, per-token log-probs returned in both cases.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

SIZES = {  # Qwen2.5 configs (tied embeddings)
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2),
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2),
}


def build(size: str, root: str = "/tmp/bench-models") -> str:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlhf.data.tokenizer import build_byte_tokenizer

    path = os.path.join(root, size)
    if not os.path.exists(os.path.join(path, "config.json")):
        tok = build_byte_tokenizer()
        cfg = Qwen2Config(vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SIZES[size])
        torch.manual_seed(0)
        Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(path)
        tok.save_pretrained(path)
    return path


def prompts(n: int, length: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(300, 150000, (n, length), generator=g).tolist()


def raw(a) -> dict:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams, TokensPrompt

    llm = LLM(model=build(a.size), dtype="bfloat16", gpu_memory_utilization=0.5, enable_prefix_caching=True,
              seed=0, logprobs_mode="processed_logprobs")
    ps = [TokensPrompt(prompt_token_ids=p) for p in prompts(a.prompts, a.prompt_len)]
    params = SamplingParams(temperature=1.0, max_tokens=a.response_len, ignore_eos=True, logprobs=0, seed=0,
                            detokenize=False)
    llm.generate(ps[:8], params, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(ps, params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    return {"mode": "raw", "size": a.size, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def ours(a) -> dict:
    import ray

    from rlhf.actors.generator import Generator, SamplingSettings

    ray.init(num_gpus=1, include_dashboard=False)
    gen = ray.remote(num_gpus=1)(Generator).remote(
        model_path=build(a.size), backend="vllm", dtype="bfloat16",
        vllm=dict(gpu_memory_utilization=0.5))
    ps = prompts(a.prompts, a.prompt_len)
    s = SamplingSettings(n=1, temperature=1.0, max_new_tokens=a.response_len, seed=0, ignore_eos=True)
    ray.get(gen.generate.remote(ps[:8], s))  # warm-up
    t0 = time.perf_counter()
    comps = ray.get(gen.generate.remote(ps, s))
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for c in comps)
    return {"mode": "ours", "size": a.size, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def _raw_generate(gen, prompt_ids: list, max_tokens: int, seed=0, logprobs=0) -> int:
    """In the generator actor: plain `LLM.generate` on its engine; the number of generated tokens.
    A seed gives every request a random generator of its own; None samples from the engine's.
    `logprobs` 0: the sampled token's log-prob with each token; None: no log-probs."""
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(temperature=1.0, max_tokens=max_tokens, ignore_eos=True, logprobs=logprobs, seed=seed,
                            detokenize=False)
    outs = gen.engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
    return sum(len(c.token_ids) for o in outs for c in o.outputs)


def compare(a) -> dict:
    import ray

    from rlhf.actors.generator import Generator, SamplingSettings

    ray.init(num_gpus=1, include_dashboard=False)
    gen = ray.remote(num_gpus=1)(Generator).remote(
        model_path=build(a.size), backend="vllm", dtype="bfloat16", vllm=dict(gpu_memory_utilization=0.5))
    ps = prompts(a.prompts, a.prompt_len)
    s = SamplingSettings(n=1, temperature=1.0, max_new_tokens=a.response_len, seed=0, ignore_eos=True)
    calls = {"raw": lambda: ray.get(gen.__ray_call__.remote(_raw_generate, ps, a.response_len)),
             "ours": lambda: sum(len(c.token_ids) for c in ray.get(gen.generate.remote(ps, s)))}
    ray.get(gen.generate.remote(ps[:8], s))  # warm-up
    runs: dict = {"raw": [], "ours": []}
    for _ in range(a.repeats):
        for mode, call in calls.items():
            t0 = time.perf_counter()
            tokens = call()
            runs[mode].append(tokens / (time.perf_counter() - t0))
    ratios = [o / r for o, r in zip(runs["ours"], runs["raw"])]
    return {"mode": "compare", "size": a.size, "tokens_per_call": tokens, "raw_tokens_per_s": runs["raw"],
            "ours_tokens_per_s": runs["ours"], "ratios": ratios, "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def _interleaved(a, variants: dict) -> dict:
    """Raw `LLM.generate` in each of two settings (`_raw_generate`'s seed and logprobs), alternated
    `a.repeats` times on one engine after a warm-up; tokens/s per call, and second over first."""
    import ray

    from rlhf.actors.generator import Generator, SamplingSettings

    ray.init(num_gpus=1, include_dashboard=False)
    gen = ray.remote(num_gpus=1)(Generator).remote(
        model_path=build(a.size), backend="vllm", dtype="bfloat16", vllm=dict(gpu_memory_utilization=0.5))
    ps = prompts(a.prompts, a.prompt_len)
    ray.get(gen.generate.remote(ps[:8], SamplingSettings(n=1, max_new_tokens=a.response_len, ignore_eos=True)))
    runs: dict = {name: [] for name in variants}
    for _ in range(a.repeats):
        for name, (seed, logprobs_) in variants.items():
            t0 = time.perf_counter()
            tokens = ray.get(gen.__ray_call__.remote(_raw_generate, ps, a.response_len, seed, logprobs_))
            runs[name].append(tokens / (time.perf_counter() - t0))
    first, second = variants
    ratios = [y / x for x, y in zip(runs[first], runs[second])]
    return {"size": a.size, "prompts": a.prompts, "tokens_per_call": tokens,
            **{f"{name}_tokens_per_s": v for name, v in runs.items()}, f"{second}_over_{first}": ratios,
            "ratio_median": statistics.median(ratios)}


def seeds(a) -> dict:
    """A seed per request (vLLM then samples each request from its own generator) against no seed
    (one batched draw)."""
    return {"mode": "seeds"} | _interleaved(a, {"seeded": (0, 0), "unseeded": (None, 0)})


def logprobs(a) -> dict:
    """The sampled tokens' log-probs returned (what the truncated-IS correction needs) against none
    (what the RL loop asks for without it)."""
    return {"mode": "logprobs"} | _interleaved(a, {"with_logprobs": (0, 0), "without": (0, None)})


def copy_bandwidth(nbytes: int) -> dict:
    """GB/s of a device-to-device copy and of a pinned host-to-device copy of `nbytes`."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    out = {}
    for name, (d, s) in {"d2d": (dst, src), "h2d_pinned": (dst, host)}.items():
        d.copy_(s)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            d.copy_(s)
        torch.cuda.synchronize()
        out[f"{name}_GBps"] = 5 * nbytes / (time.perf_counter() - t0) / 1e9
    return out


def sync(a) -> dict:
    """Trainer (ZeRO-2, bf16) and vLLM generator colocated on one GPU; `--transport auto`
    picks CUDA IPC there. After a sync the engine must score a fixed sequence as the trainer does."""
    import ray

    from rlhf.actors.generator import Generator
    from rlhf.actors.group import ActorGroup
    from rlhf.actors.deepspeed_rank import OptimSettings
    from rlhf.actors.policy_trainer import PolicyTrainer
    from rlhf.config import GeneratorConfig
    from rlhf.sync import make_transport

    path = build(a.size)
    ray.init(num_gpus=1, include_dashboard=False)
    trainers = ActorGroup(PolicyTrainer, 1, name="trainer", num_gpus=0.5, kwargs=lambda r: dict(
        model_path=path, optim=OptimSettings(lr=1e-6, zero_stage=a.zero_stage), rank=0, world_size=1,
        dtype="bfloat16"))
    addr, port = ray.get(trainers.actors[0].rendezvous.remote())
    trainers.each(lambda t: t.init_distributed.remote(addr, port))
    gens = ActorGroup(Generator, 1, name="generator", num_gpus=0.5, kwargs=lambda r: dict(
        model_path=path, backend="vllm", dtype="bfloat16", vllm=dict(gpu_memory_utilization=0.3)))
    transport = make_transport(GeneratorConfig(weight_sync=a.transport, sync_bucket_mb=a.bucket_mb), trainers, gens)
    stats = [transport.sync(trainers, gens, v) for v in range(1, 7)]  # the first apart, the median of 5
    seconds = sorted(s.seconds for s in stats[1:])
    nbytes = stats[-1].num_bytes
    seq = {"input_ids_BT": torch.tensor([prompts(1, 64)[0]]), "attention_mask_BT": torch.ones(1, 64, dtype=torch.long),
           "response_mask_BR": torch.ones(1, 32)}
    before = ray.get(gens.actors[0].logprobs.remote(seq, 1.0))
    # new weights in the same memory (as an update leaves them), then one more sync: the engine
    # must score with them, whichever way it loaded (a replay of recorded copies included)
    def scale_matrices(self):  # ZeRO-3: each rank scales its shard
        for p in self.engine.module.parameters():
            if len(getattr(p, "ds_shape", p.shape)) > 1:
                getattr(p, "ds_tensor", p).data.mul_(1.05)

    trainers.each(lambda t: t.__ray_call__.remote(scale_matrices))
    last = transport.sync(trainers, gens, 7)
    engine, trainer = ray.get([gens.actors[0].logprobs.remote(seq, 1.0), trainers.actors[0].logprobs.remote(seq, 1.0)])
    return {"mode": "sync", "size": a.size, "zero_stage": a.zero_stage, "transport": type(transport).__name__,
            "ipc_mode": ray.get(trainers.actors[0].__ray_call__.remote(
                lambda self: getattr(getattr(self, "_ipc_sender", None), "mode", None))),
            "bucket_mb": a.bucket_mb,
            "bytes": nbytes, "seconds_median": statistics.median(seconds), "seconds_min": seconds[0],
            "seconds_first": stats[0].seconds, "effective_GBps": nbytes / statistics.median(seconds) / 1e9,
            "replayed_last": last.phases.get("replayed"),
            "logprob_max_abs_diff": float((engine - trainer).abs().max()),
            "logprob_mean_moved": float((engine - before).abs().mean()),
            "phases_median_s": {k: statistics.median(st.phases[k] for st in stats[1:]) for k in stats[-1].phases}
            } | copy_bandwidth(nbytes)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["raw", "ours", "compare", "seeds", "logprobs", "sync"])
    p.add_argument("--repeats", type=int, default=3, help="compare: interleaved pairs of calls")
    p.add_argument("--size", choices=list(SIZES), default="0.5b")
    p.add_argument("--prompts", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--response-len", type=int, default=256)
    p.add_argument("--transport", default="auto", help="sync: generator.weight_sync")
    p.add_argument("--bucket-mb", type=float, default=512.0, help="sync: generator.sync_bucket_mb")
    p.add_argument("--zero-stage", type=int, default=2, help="sync: the trainer's ZeRO stage")
    args = p.parse_args()
    result = {"raw": raw, "ours": ours, "compare": compare, "seeds": seeds, "logprobs": logprobs,
              "sync": sync}[args.mode](args)
    result |= {"device": torch.cuda.get_device_name(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result), flush=True)
