"""Entry points, one per recipe: `python -m rlhf.recipes.<name>` with sft, rm, dpo, ppo, grpo,
dapo. Each holds its paper and departures (docstring), its defaults and `main`; the loops are
in `rlhf.loops`, start-up in `rlhf.startup`, the config trees in `rlhf.config`."""
