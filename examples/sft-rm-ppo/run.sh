#!/usr/bin/env bash
# SFT -> RM -> PPO on Anthropic HH-RLHF, each stage on 8 GPUs; each stage reads the previous one's output
# under runs/ (the run.name of each config fixes its directory):
#   sft.yaml  -> runs/hh-sft/policy
#   rm.yaml   (model.path: runs/hh-sft/policy)                         -> runs/hh-rm/reward_model
#   ppo.yaml  (model.path: runs/hh-sft/policy,
#              reward.model and critic.init: runs/hh-rm/reward_model)  -> runs/hh-ppo/policy
# Usage, from the repository root: bash examples/sft-rm-ppo/run.sh HH_TRAIN.jsonl.gz HH_TEST.jsonl.gz
# (the anthropics/hh-rlhf files, e.g. helpful-base/train.jsonl.gz and helpful-base/test.jsonl.gz).
# On a Ray cluster, prefix each python command with
#   RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir . --
set -euo pipefail
HERE=examples/sft-rm-ppo
python "$HERE/prepare_hh.py" "$1" "$2" data/hh-rlhf
python -m rlhf.recipes.sft --config "$HERE/sft.yaml"
python -m rlhf.recipes.rm --config "$HERE/rm.yaml"
python -m rlhf.recipes.ppo --config "$HERE/ppo.yaml"
