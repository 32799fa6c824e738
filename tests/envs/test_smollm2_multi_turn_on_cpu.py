"""Two multi-turn DAPO steps on SmolLM2-135M-Instruct (its own tokenizer and chat template,
tools in the Hermes syntax described in the system message), on GSM8K-style prompts."""

import json
from pathlib import Path

import pytest

from rlhf.recipes import dapo

HERE = Path(__file__).parent

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("ray_local")]


@pytest.mark.timeout(3000)
def test_two_multi_turn_dapo_steps_on_smollm2(smollm2, tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [{"prompt": f"Use the calculator: what is {a} * {b}?", "answer": str(a * b)}
            for a, b in ((123, 45), (310, 27), (908, 11), (456, 78))]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    summary = dapo.main([f"model.path={smollm2}", f"data.train={data}", f"data.eval={data}", "data.num_eval=4",
                         "data.max_prompt_len=512",  # the tool schemas alone are ~200 tokens
                         f"rollout.env={HERE / 'smollm2_tools_env.py'}:DescribedTools", "rollout.max_turns=2",
                         "rollout.max_new_tokens=48", "rollout.max_episode_tokens=160", "rollout.prompts_per_step=2",
                         "rollout.gen_prompts=2", "rollout.n=2", "algorithm.dynamic_sampling.enabled=false",
                         "warmstart.steps=0", "run.steps=2", "run.eval_every=0", "run.progress=false",
                         "run.save_policy=false", "trainer.lr=1e-6", f"run.output_dir={tmp_path}", "run.name=s"])
    records = [json.loads(l) for l in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert [r["step"] for r in steps] == [1, 2] and summary["steps"] == 2
    for r in steps:
        assert {"tools/calls", "tools/use_rate", "episode/turns_mean"} <= set(r)
        assert r["response/length_max"] <= 160
