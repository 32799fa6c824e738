"""The starting model of a run: `model.path` (a directory, or a `.gguf` file converted once into
one), or the tiny built-in model (built once, cached)."""

from __future__ import annotations

from rlhf.gguf import gguf_to_checkpoint, is_gguf
from rlhf.models import check_model_path, load_tokenizer, tiny_model_path


def base_model(cfg) -> tuple[str, object]:
    """(path, tokenizer) of the model before any training of this run; always a directory."""
    if cfg.model.path and is_gguf(cfg.model.path):
        path = gguf_to_checkpoint(cfg.model.path, cfg.model.cache_dir)
    elif cfg.model.path:
        check_model_path(cfg.model.path)
        path = cfg.model.path
    else:
        path = tiny_model_path(cfg.model.tiny, cfg.model.cache_dir, cfg.run.seed)
    return path, load_tokenizer(path)
