"""ORPO: Monolithic Preference Optimization without Reference Model (Hong et al. 2024, arXiv 2403.07691).

    python -m rlhf.recipes.orpo [--config FILE.yaml] [key=value ...]     (--help lists every key)

Supervised fine-tuning and preference alignment in one stage and one loss (eq. 6):
    L = NLL(y_w) + lambda * -log sigma(log odds(y_w|x) - log odds(y_l|x)),
with odds(y|x) = P(y|x) / (1 - P(y|x)) and P the average token probability of the response
(eq. 4; `rlhf.algorithms.orpo_loss`, `orpo.lam`, the paper's 0.1). No reference model is
started. Data as for `rlhf.recipes.dpo` (chosen/rejected pairs); held-out metrics: preference
accuracy, the accuracy and mean of the log odds ratio, and greedy task accuracy (`eval.fns`).
Departures: the embedded default starts from the warm-started tiny policy (`warmstart.*`,
cached) so that the preference signal shows in a few dozen steps; the one-stage use the paper
describes is `warmstart.steps=0 model.path=<a base model>`. The NLL is the token mean of each
chosen answer, averaged over pairs.
The loop is `rlhf.loops.supervised` with `rlhf.loops.supervised_tasks.ORPOTask`.
"""

from __future__ import annotations

from rlhf.config import ORPOConfig, recipe_defaults
from rlhf.recipes.dpo import PAIR_SIZES

DEFAULTS = [
    "orpo.lam=0.1",
    *PAIR_SIZES,  # the sizes of DPO's embedded default
]


def orpo_defaults() -> ORPOConfig:
    """Embedded default: the warm-started tiny policy learns to prefer correct worked sums."""
    return recipe_defaults(ORPOConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.supervised import run_supervised
    from rlhf.loops.supervised_tasks import ORPOTask
    from rlhf.startup.cli import run_recipe

    return run_recipe("orpo", orpo_defaults(), lambda cfg: run_supervised(cfg, ORPOTask()), argv)


if __name__ == "__main__":
    main()
