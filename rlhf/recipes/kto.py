"""KTO: Model Alignment as Prospect Theoretic Optimization (Ethayarajh et al. 2024, arXiv 2402.01306).

    python -m rlhf.recipes.kto [--config FILE.yaml] [key=value ...]      (--help lists every key)

Alignment from unpaired feedback: each example is a response labelled desirable or not. With
the implicit reward r = log pi(y|x) - log pi_ref(y|x) and the reference point z_0, an
estimate of KL(pi || pi_ref) from mismatched (prompt, other completion) pairs of the batch,
not differentiated (section 4.1), the loss is the mean of lambda_y - v with
v = lambda_d sigma(beta (r - z_0)) for desirable and lambda_u sigma(beta (z_0 - r)) for
undesirable responses (eq. 8; `rlhf.algorithms.kto_loss`, `kto.beta`, `kto.lambda_d`,
`kto.lambda_u`). The reference is the warm-started policy (`warmstart.*`, cached).
Data: rows with `data.prompt_key`, `data.completion_key` and a true/false `data.label_key`,
or preference pairs (chosen/rejected), each giving one desirable and one undesirable example;
empty: the built-in addition pairs, unpaired. Held-out metrics: the mean implicit reward of
desirable and undesirable examples and their gap (`eval/margin`), and greedy task accuracy.
Departures: z_0 is estimated per micro-batch on each rank (the paper: over the batch).
The loop is `rlhf.loops.supervised` with `rlhf.loops.supervised_tasks.KTOTask`.
"""

from __future__ import annotations

from rlhf.config import KTOConfig, recipe_defaults
from rlhf.recipes.dpo import PAIR_SIZES

DEFAULTS = [
    "kto.beta=0.1",
    *PAIR_SIZES,  # the sizes of DPO's embedded default
]


def kto_defaults() -> KTOConfig:
    """Embedded default: the warm-started tiny policy learns from correct and wrong worked sums."""
    return recipe_defaults(KTOConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.supervised import run_supervised
    from rlhf.loops.supervised_tasks import KTOTask
    from rlhf.startup.cli import run_recipe

    return run_recipe("kto", kto_defaults(), lambda cfg: run_supervised(cfg, KTOTask()), argv)


if __name__ == "__main__":
    main()
