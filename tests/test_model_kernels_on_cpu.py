"""The trainer's kernel choice (`RLHF_KERNELS`, rlhf.models.apply_kernels)."""

import pytest
import torch


@pytest.mark.parametrize("value,message", [("triton", "expected one of auto, none, liger"),
                                           ("liger", "needs a CUDA device")])
def test_kernel_choice_errors_name_the_setting(tmp_path, monkeypatch, value, message):
    """`RLHF_KERNELS` picks the trainer's kernels: a wrong value, or Liger's GPU-only kernels on
    CPU, stop the load with an error naming the setting; unset (auto), a CPU model loads as it is."""
    from rlhf.config import TinyModelConfig
    from rlhf.models import load_causal_lm, tiny_model_path

    path = tiny_model_path(TinyModelConfig(), str(tmp_path), seed=0)
    assert load_causal_lm(path, torch.float32) is not None
    monkeypatch.setenv("RLHF_KERNELS", value)
    with pytest.raises(ValueError, match=f"RLHF_KERNELS.*{message}"):
        load_causal_lm(path, torch.float32)
