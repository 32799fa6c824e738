"""Bad input ends a run before any actor starts: exit code 2 and one line naming the key, file,
row or column (and the valid range), never a traceback from inside Ray."""

import json
import re

import pytest
import ray
import torch
from safetensors.torch import save_file

from rlhf.recipes import dapo, sft


def _bad_inputs(tmp_path) -> dict:
    (tmp_path / "bad_utf8.jsonl").write_bytes(b'{"prompt": "1 + 1?", "answer": "2"}\n{"prompt": "\xff"}\n')
    (tmp_path / "text.parquet").write_text("not parquet\n")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "list.yaml").write_text("- trainer.lr: 1\n")
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2",')
    cut = tmp_path / "cut_model"
    cut.mkdir()
    (cut / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    save_file({"w": torch.zeros(256)}, str(cut / "model.safetensors"))
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:300])
    (tmp_path / "garbage.gguf").write_text("not a GGUF\n")
    return {
        f"data.train={tmp_path}/bad_utf8.jsonl": r"bad_utf8\.jsonl:2: .*not UTF-8",
        f"data.train={tmp_path}/text.parquet": r"text\.parquet: not a readable parquet file",
        f"data.train={tmp_path}/a_dir": r"a_dir is a directory",
        "data.task=multiplication": r"data\.task='multiplication' is not one of addition",
        "trainer.lr=-1": r"trainer\.lr=-1.0 must be > 0",
        "run.steps=0": r"run\.steps=0 must be > 0",
        "trainer.max_tokens_per_micro_batch=-1": r"trainer\.max_tokens_per_micro_batch=-1 must be >= 0",
        "trainer.num_workers=0": r"trainer\.num_workers=0 must be > 0",
        "rollout.prompts_per_step=0": r"rollout\.prompts_per_step=0 must be > 0",
        "rollout.temperature=0": r"rollout\.temperature=0 \(greedy\) with rollout\.n=8",
        f"model.path={broken}": r"config\.json is not valid JSON",
        f"model.path={cut}": r"model\.safetensors is damaged or truncated",
        f"model.path={tmp_path}/absent.gguf": r"model\.path=.*absent\.gguf: no such GGUF file",
        f"model.path={tmp_path}/garbage.gguf": r"garbage\.gguf: not a GGUF file",
        f"--config {tmp_path}/list.yaml": r"list\.yaml: the top level must be a mapping",
    }


def test_each_bad_input_is_one_line_and_exit_2_before_ray(tmp_path, capsys):
    for arg, message in _bad_inputs(tmp_path).items():
        with pytest.raises(SystemExit) as e:
            dapo.main(arg.split(" ") + [f"run.output_dir={tmp_path}/runs"])
        err = capsys.readouterr().err
        assert e.value.code == 2, arg
        assert err.startswith("error: ") and err.count("\n") == 1, (arg, err)
        assert re.search(message, err), (arg, err)
        assert not ray.is_initialized(), arg
    assert not (tmp_path / "runs").exists()  # nothing was written for any of them


def test_rows_missing_a_reward_column_are_named_or_skipped(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [{"prompt": "What is 1 + 1?"}, {"prompt": "2 + 2?", "answer": "4"},
                                                       {"prompt": "3 + 3?", "answer": "6"}]) + "\n")
    with pytest.raises(SystemExit) as e:
        dapo.main([f"data.train={data}", f"run.output_dir={tmp_path}/runs"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{data}: row 1 has no column 'answer or solution'" in err
    assert "math_verify" in err and "data.skip_incomplete_rows=true" in err

    from rlhf.config import RLConfig, load_config
    from rlhf.startup.inputs import rl_inputs

    cfg = load_config(RLConfig, dapo.dapo_defaults(), [f"data.train={data}", "data.skip_incomplete_rows=true",
                                                       "warmstart.steps=0"])
    inputs = rl_inputs(cfg)
    assert len(inputs.train) == 2 and inputs.skipped_rows == {"train": 1}
    assert inputs.train.columns["answer"] == ["4", "6"]


def test_a_column_absent_from_the_first_row_is_still_read(tmp_path):
    """The columns are those of every row, not of the first one."""
    from rlhf.config import RLConfig, load_config
    from rlhf.startup.inputs import rl_inputs

    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [{"prompt": "1 + 1?", "solution": "\\boxed{2}"},
                                                       {"prompt": "2 + 2?", "answer": "4"}]) + "\n")
    cfg = load_config(RLConfig, dapo.dapo_defaults(), [f"data.train={data}", "warmstart.steps=0"])
    columns = rl_inputs(cfg).train.columns
    assert columns["answer"] == [None, "4"] and columns["solution"] == ["\\boxed{2}", None]


def test_supervised_bad_input_is_caught_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        sft.main([f"data.train={tmp_path}/missing.jsonl", f"run.output_dir={tmp_path}/runs"])
    assert e.value.code == 2 and "data file not found" in capsys.readouterr().err
