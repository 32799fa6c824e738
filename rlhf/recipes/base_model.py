"""The starting model of a recipe: `model.path`, or the tiny built-in model (warm-started on
the built-in task when `warmstart.steps > 0`)."""

from __future__ import annotations

from rlhf.models import check_model_path, load_tokenizer, tiny_model_path


def base_model(cfg) -> tuple[str, object]:
    """(path, tokenizer) of the model before any training of this run."""
    if cfg.model.path:
        check_model_path(cfg.model.path)
        path = cfg.model.path
    else:
        path = tiny_model_path(cfg.model.tiny, cfg.warmstart.cache_dir, cfg.run.seed)
    return path, load_tokenizer(path)
