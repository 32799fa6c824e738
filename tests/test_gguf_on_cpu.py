"""`model.path=<file>.gguf`: checked before anything starts (a missing, foreign or cut file is one
line naming model.path), converted once into a plain Hugging Face checkpoint cached by the file's
content (a changed file is a new key; a second use converts nothing)."""

import hashlib
import json

import pytest

from rlhf import gguf
from rlhf.models import ModelPathError, check_model_path, load_causal_lm, load_tokenizer

pytest.importorskip("gguf")


def _write_gguf(path, rows: int = 8) -> None:
    """A small valid GGUF (two float32 tensors) written with the gguf package's own writer."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(rows * 4, dtype=np.float32).reshape(rows, 4))
    writer.add_tensor("output_norm.weight", np.ones(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_valid_gguf_passes_the_check(tmp_path):
    _write_gguf(tmp_path / "m.gguf")
    check_model_path(str(tmp_path / "m.gguf"))


@pytest.mark.parametrize("make,message", [
    (lambda p: None, r"model\.path=.*model\.gguf: no such GGUF file"),
    (lambda p: p.write_text("hello\n"), r"model\.path=.*model\.gguf: not a GGUF file \(it does not start with"),
    (lambda p: p.write_bytes(b""), r"model\.path=.*model\.gguf: not a GGUF file"),
    (lambda p: p.write_bytes(b"GGUF\x03\x00"), r"model\.path=.*model\.gguf: not a readable GGUF file \("),
], ids=["missing", "foreign", "empty", "header-only"])
def test_a_bad_gguf_is_one_line_naming_model_path(tmp_path, make, message):
    path = tmp_path / "model.gguf"
    make(path)
    with pytest.raises(ModelPathError, match=message) as e:
        check_model_path(str(path))
    assert "\n" not in str(e.value)


def test_a_cut_gguf_is_refused_before_conversion(tmp_path):
    _write_gguf(tmp_path / "m.gguf")
    whole = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(whole[:-20])  # the last tensor loses 5 of its 4-byte values
    with pytest.raises(ModelPathError, match=r"model\.path=.*cut\.gguf: not a readable GGUF file") as e:
        gguf.gguf_to_checkpoint(str(tmp_path / "cut.gguf"), str(tmp_path / "cache"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache").exists()  # nothing was written


def test_the_cache_key_is_the_content_hash(tmp_path, monkeypatch):
    monkeypatch.delenv("RLHF_CACHE", raising=False)
    _write_gguf(tmp_path / "a.gguf")
    _write_gguf(tmp_path / "b.gguf")  # the same bytes under another name: the same model
    _write_gguf(tmp_path / "c.gguf", rows=9)  # one more embedding row: another model
    key = lambda name: gguf.cached_checkpoint_dir(str(tmp_path / name), str(tmp_path / "cache"))  # noqa: E731
    expected = hashlib.sha256((tmp_path / "a.gguf").read_bytes()).hexdigest()[:16]
    assert key("a.gguf") == tmp_path / "cache" / "models" / f"gguf-{expected}"
    assert key("b.gguf") == key("a.gguf") and key("c.gguf") != key("a.gguf")


def test_a_file_transformers_cannot_convert_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("RLHF_CACHE", raising=False)
    _write_gguf(tmp_path / "m.gguf")  # valid GGUF, but no tokenizer and no model config in it
    with pytest.raises(ModelPathError, match=r"model\.path=.*m\.gguf: converting the GGUF to a Hugging Face "
                                             r"checkpoint failed") as e:
        gguf.gguf_to_checkpoint(str(tmp_path / "m.gguf"), str(tmp_path / "cache"))
    assert "\n" not in str(e.value)
    assert list((tmp_path / "cache" / "models").iterdir()) == []  # the temporary directory is gone


@pytest.mark.real_model
def test_smollm2_gguf_becomes_a_plain_cached_checkpoint(smollm2_gguf, smollm2, monkeypatch):
    """`smollm2` (tests/conftest.py) is the conversion of the package's GGUF by `gguf_to_checkpoint`."""
    monkeypatch.delenv("RLHF_CACHE", raising=False)
    assert smollm2.name == f"gguf-{gguf.content_hash(smollm2_gguf)}"
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    tokenizer = load_tokenizer(str(smollm2))
    assert tokenizer.chat_template and "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "2 + 2?"}], tokenize=False, add_generation_prompt=True)
    import torch

    model = load_causal_lm(str(smollm2), torch.float32)  # check_model_path passes: a normal checkpoint
    assert model.config.vocab_size == len(tokenizer) and not getattr(model, "is_quantized", False)

    def reconversion(*args):
        raise AssertionError("the cached checkpoint was converted again")

    monkeypatch.setattr(gguf, "convert", reconversion)
    assert gguf.gguf_to_checkpoint(str(smollm2_gguf), str(smollm2.parents[1])) == str(smollm2)
