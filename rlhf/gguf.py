"""`model.path` as a `.gguf` file: dequantised once into a plain Hugging Face checkpoint (weights,
config, tokenizer with its chat template), cached by the file's content, so every actor and the
run's saved `policy/` see an ordinary model directory."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from rlhf.models import ModelPathError, _atomic_replace, cache_root


def is_gguf(path: str) -> bool:
    return str(path).lower().endswith(".gguf")


def check_gguf(path: str) -> None:
    """The file exists and its header and tensor table read whole (a cut or foreign file fails here,
    in one line, instead of deep inside transformers)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelPathError(f"model.path={path}: no such GGUF file")
    with open(p, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelPathError(f"model.path={path}: not a GGUF file (it does not start with the bytes 'GGUF')")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelPathError(f"model.path={path}: reading a .gguf model needs the gguf package "
                             "(pip install gguf)") from None
    try:
        GGUFReader(str(p))
    except Exception as e:  # noqa: BLE001  (a short header, a cut tensor: numpy and gguf raise several kinds)
        raise ModelPathError(f"model.path={path}: not a readable GGUF file "
                             f"({type(e).__name__}: {_first_line(e)})") from None


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, 16 hex digits (the cache key: a changed file is a new model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached_checkpoint_dir(path: str, cache_dir: str) -> Path:
    return cache_root(cache_dir) / "models" / f"gguf-{content_hash(Path(path).expanduser())}"


def gguf_to_checkpoint(path: str, cache_dir: str) -> str:
    """The Hugging Face directory of GGUF file `path`, converted on first use (atomically: a
    temporary directory renamed into place, so a killed conversion leaves nothing half-written)."""
    check_gguf(path)
    out = cached_checkpoint_dir(path, cache_dir)
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        try:
            convert(Path(path).expanduser(), tmp)
        except Exception as e:  # noqa: BLE001  (an architecture transformers cannot read, a bad tokenizer, ...)
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelPathError(f"model.path={path}: converting the GGUF to a Hugging Face checkpoint failed "
                                 f"({type(e).__name__}: {_first_line(e)})") from None
        _atomic_replace(tmp, out)
    return str(out)


def convert(src: Path, out: Path) -> None:
    """transformers dequantises the GGUF's tensors to float32; the config's GGUF quantisation
    marker is dropped so the saved directory loads (and saves again) as a normal checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # with the GGUF's chat template


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"
