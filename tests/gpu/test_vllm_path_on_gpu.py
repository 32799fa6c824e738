"""The GPU path with the real engines: vLLM generation, weights from the DeepSpeed trainer into
the running vLLM engine, log-prob agreement after a sync, a colocated DAPO run that improves,
and generation + sync at Qwen2.5-0.5B size. Skipped where there is no CUDA device or no vLLM."""

import json
import os
import time

import pytest
import ray
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
vllm = pytest.importorskip("vllm")

# head_dim 64: the smallest size every vLLM attention backend takes
TINY = ["model.tiny.hidden_size=256", "model.tiny.num_heads=4", "model.tiny.num_kv_heads=2",
        "model.tiny.intermediate_size=512"]
GPU = ["generator.backend=vllm", "generator.gpu_memory_utilization=0.25", "generator.enforce_eager=true",
       "generator.max_model_len=512", "trainer.gpus_per_worker=0.4",
       "generator.gpus_per_worker=0.4", "model.dtype=bfloat16", "run.progress=false"]
QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2)


@pytest.fixture(scope="module", autouse=True)
def ray_gpu(tmp_path_factory):
    os.environ.setdefault("RLHF_CACHE", str(tmp_path_factory.mktemp("cache")))
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def _roles(extra):
    from rlhf.config import RLConfig, load_config
    from rlhf.recipes.dapo import dapo_defaults
    from rlhf.loops.warmstart import warm_start
    from rlhf.startup.inputs import rl_inputs
    from rlhf.startup.roles import create_roles

    cfg = load_config(RLConfig, dapo_defaults(), TINY + GPU + extra)
    inputs = rl_inputs(cfg)
    return (cfg, inputs.tokenizer, inputs.train, inputs.evalset,
            create_roles(cfg, warm_start(cfg, inputs.base_path, inputs.tokenizer)))


@pytest.mark.parametrize("lora,quant", [(0, "none"), (8, "none"), (8, "nf4")])
def test_engine_logprobs_match_trainer_after_a_step_and_sync(lora, quant):
    """Two steps, so the second sync replays what the first recorded (full fine-tuning: from the
    trainer's parameters themselves; LoRA: from the bucket buffer). `quant=nf4`: QLoRA, the
    trainer's base in 4 bits; the engine gets it dequantised and merged."""
    from rlhf.loops.rl import RLLoop
    from rlhf.sync import make_transport

    if quant != "none":
        pytest.importorskip("bitsandbytes")
    cfg, tok, train, evalset, roles = _roles(["warmstart.steps=50", "rollout.temperature=1.0",
                                              f"model.lora_rank={lora}", f"model.quantization={quant}",
                                              "trainer.lr=1e-3"])
    try:
        transport = make_transport(cfg.generator, roles.trainers, roles.generators)
        assert type(transport).__name__ == "IPCTransport"  # trainer and generator share the GPU
        loop = RLLoop(cfg, roles, tok, train, evalset, transport)
        first = loop.step()  # generate with vLLM, one DeepSpeed update, sync: the engine records its load
        batch, _, _ = loop.collect()
        before, trainer_before = ray.get([roles.generators.actors[0].logprobs.remote(batch, 1.0),
                                          roles.trainers.actors[0].logprobs.remote(batch, 1.0)])
        metrics = loop.step()  # the second sync replays the recorded copies from the same memory
        assert first["sync/seconds"] > 0 and metrics["sync/replayed"] == 1
        engine = ray.get(roles.generators.actors[0].logprobs.remote(batch, 1.0))
        trainer = ray.get(roles.trainers.actors[0].logprobs.remote(batch, 1.0))
        mask = batch["response_mask_BR"] > 0
        diff = (engine - trainer).abs()[mask]
        rollout_diff = (batch["rollout_logprobs_BR"] - trainer_before).abs()[mask]  # what vLLM sampled with
        print(f"\nLoRA rank {lora}, quantization {quant}: engine vs trainer log-probs after sync (bf16): mean {diff.mean():.4f} max {diff.max():.4f}; "
              f"sampling log-probs vs trainer: mean {rollout_diff.mean():.4f}; sync {metrics['sync/seconds']:.3f} s")
        moved = (engine - before).abs()[mask].mean()
        print(f"the update moved the engine's log-probs by {moved:.4f} on average; "
              f"sync mode {ray.get(roles.trainers.actors[0].__ray_call__.remote(lambda t: t._ipc_sender.mode))}")
        assert diff.mean() < 0.03 and rollout_diff.mean() < 0.03 and moved > 2 * diff.mean()
    finally:
        roles.kill()


def test_colocated_dapo_improves(tmp_path):
    from rlhf.recipes import dapo

    s = dapo.main(TINY + GPU + ["placement.mode=colocate", "run.steps=20", "run.eval_every=10", f"run.output_dir={tmp_path}", "run.name=gpu"])
    print(f"\nDAPO on one GPU (vLLM + DeepSpeed, colocated): accuracy {s['accuracy_before']:.3f} -> "
          f"{s['accuracy_after']:.3f}, reward {s['reward_first']:.3f} -> {s['reward_last']:.3f}, "
          f"{s['step_seconds_mean']:.2f} s/step, {s['wall_s']} s")
    assert s["accuracy_after"] > s["accuracy_before"]


def test_qwen25_05b_size_generation_and_sync(tmp_path):
    from rlhf.config import TinyModelConfig
    from rlhf.models import tiny_model_path

    path = tiny_model_path(TinyModelConfig(**QWEN25_05B), str(tmp_path), 0)
    cfg, tok, train, evalset, roles = _roles([f"model.path={path}", "warmstart.steps=0",
                                              "generator.gpu_memory_utilization=0.3"])
    try:
        from rlhf.actors.generator import SamplingSettings
        from rlhf.sync import make_transport

        t0 = time.perf_counter()
        comps = ray.get(roles.generators.actors[0].generate.remote(
            train.prompt_ids[:64], SamplingSettings(n=4, temperature=1.0, max_new_tokens=64, seed=0)))
        gen_s = time.perf_counter() - t0
        transport = make_transport(cfg.generator, roles.trainers, roles.generators)
        stats = [transport.sync(roles.trainers, roles.generators, v) for v in (1, 2)]
        nbytes = stats[-1].num_bytes
        print(f"\n0.5B-size: {len(comps)} completions, {sum(len(c.token_ids) for c in comps)} tokens in {gen_s:.2f} s; "
              f"sync {nbytes / 1e9:.2f} GB in {stats[-1].seconds:.2f} s ({nbytes / stats[-1].seconds / 1e9:.2f} GB/s, "
              f"{type(transport).__name__})")
        assert len(comps) == 256 and all(len(c.logprobs) == len(c.token_ids) for c in comps)
        print(json.dumps({"sync_seconds": stats[-1].seconds, "bytes": nbytes, "gen_seconds": gen_s}))
    finally:
        roles.kill()
