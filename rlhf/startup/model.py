"""The starting model of a run: `model.path`, or the tiny built-in model (built once, cached)."""

from __future__ import annotations

from rlhf.models import check_model_path, load_tokenizer, tiny_model_path


def base_model(cfg) -> tuple[str, object]:
    """(path, tokenizer) of the model before any training of this run."""
    if cfg.model.path:
        check_model_path(cfg.model.path)
        path = cfg.model.path
    else:
        path = tiny_model_path(cfg.model.tiny, cfg.model.cache_dir, cfg.run.seed)
    return path, load_tokenizer(path)
