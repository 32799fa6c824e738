#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md, one part per call (each fits a 10-minute call on
# one H100). Results: JSON lines and logs under $OUT (default benchmarks/results).
#   bash benchmarks/gpu_suite.sh tests|sync|mfu|grpo|offpolicy|qlora
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-}:$PWD" PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 \
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RLHF_CACHE="${RLHF_CACHE:-/tmp/rlhf-cache}"
py() { python3 "$@"; }
# the 0.36B model of Qwen2.5-0.5B's shape with the built-in task's byte vocabulary
QWEN05="model.tiny.hidden_size=896 model.tiny.intermediate_size=4864 model.tiny.num_layers=24 model.tiny.num_heads=14 model.tiny.num_kv_heads=2"
GPU="generator.backend=vllm placement.mode=colocate model.dtype=bfloat16 generator.gpu_memory_utilization=0.3 run.progress=false"

case "${1:?part}" in
tests)
  py -m pytest -q -s tests/gpu 2>&1 | tee "$OUT/tests.log" | grep -E "LoRA|moved|DAPO|0.5B|passed|failed|Error" ;;
sync)
  for args in "--size 1.5b --bucket-mb 512" "--size 1.5b --bucket-mb 4096" "--size 0.5b --bucket-mb 4096"; do
    py benchmarks/gpu_rollout_sync.py sync $args 2>>"$OUT/sync.log" | tail -1 | tee -a "$OUT/sync.jsonl"
  done ;;
mfu)  # the packed trainer (token budgets, attention kernels) next to a plain HF loop, same session
  for size in 0.5b 1.5b; do
    py benchmarks/hf_baseline.py --size $size 2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  done
  for args in "--size 0.5b --zero-stage 2 --max-tokens 16384" "--size 0.5b --zero-stage 2 --max-tokens 32768" \
              "--size 0.5b --zero-stage 2 --packing false" "--size 0.5b --zero-stage 3 --max-tokens 16384" \
              "--size 1.5b --zero-stage 2 --max-tokens 16384" "--size 1.5b --zero-stage 3 --max-tokens 16384"; do
    py benchmarks/trainer_mfu.py $args 2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  done
  for attn in flex_attention sdpa; do  # the kernel on packed rows (flash-attn is not in the carried wheels)
    RLHF_ATTENTION=$attn py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 16384 \
      2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  done ;;
grpo)
  for fw in ours trl; do
    py benchmarks/grpo_step.py "$fw" --size 0.5b 2>"$OUT/grpo-$fw.log" | tail -1 | tee -a "$OUT/grpo.jsonl"
  done ;;
offpolicy)
  for k in 1 0; do
    py -m rlhf.recipes.dapo $QWEN05 $GPU warmstart.lr=3e-4 warmstart.steps=300 trainer.lr=1e-5 \
      rollout.max_staleness=$k run.steps=20 run.eval_every=10 run.output_dir="$OUT/runs" run.name="qwen05-k$k" \
      > "$OUT/offpolicy-k$k.log" 2>&1
    tail -1 "$OUT/offpolicy-k$k.log"; cp "$OUT/runs/qwen05-k$k/summary.json" "$OUT/offpolicy-k$k-summary.json"
  done ;;
qlora)  # trainer peak memory: full fine-tuning, LoRA, QLoRA (needs bitsandbytes)
  OUT="$OUT" bash benchmarks/qlora_memory.sh | tee -a "$OUT/qlora.jsonl" ;;
*) echo "unknown part $1" >&2; exit 2 ;;
esac
