#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md, one part per call (each fits a 10-minute call on
# one H100). Results: JSON lines and logs under $OUT (default benchmarks/results).
#   bash benchmarks/gpu_suite.sh PART [PART ...]     PART: tests|mfu|mfu-kernels|mfu-logprobs|profile|logprobs|rollout|seeds|rollout-logprobs|sync|sleep|offload|grpo|offpolicy|qlora
# MFU_SIZES="1.5b" / MFU_STAGES="2" limit the mfu part to some sizes / ZeRO stages, GRPO_RUNS chooses the
# grpo part's runs; RUN_TIMEOUT (seconds, default 900) stops any one run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-}:$PWD" PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 \
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RLHF_CACHE="${RLHF_CACHE:-/tmp/rlhf-cache}"
py() { timeout "${RUN_TIMEOUT:-900}" python3 "$@"; }
# the 0.36B model of Qwen2.5-0.5B's shape with the built-in task's byte vocabulary
QWEN05="model.tiny.hidden_size=896 model.tiny.intermediate_size=4864 model.tiny.num_layers=24 model.tiny.num_heads=14 model.tiny.num_kv_heads=2"
GPU="generator.backend=vllm placement.mode=colocate model.dtype=bfloat16 generator.gpu_memory_utilization=0.3 run.progress=false"

for part in "${@:?part}"; do
case "$part" in
tests)
  py -m pytest -q -s tests/gpu tests/actors/test_runtime_on_gpu.py 2>&1 | tee "$OUT/tests.log" | grep -E "LoRA|moved|DAPO|0.5B|passed|failed|Error" ;;
rollout)  # our generator / raw LLM.generate on one engine, 3 interleaved pairs per size
  for size in 1.5b 0.5b; do
    py benchmarks/gpu_rollout_sync.py compare --size $size --repeats 3 2>>"$OUT/rollout.log" | tail -1 | tee -a "$OUT/rollout.jsonl"
  done ;;
seeds)  # 0.5B, 256 requests x 256 tokens (a GRPO batch): a random generator per request vs none
  py benchmarks/gpu_rollout_sync.py seeds --size 0.5b --prompts 256 --prompt-len 48 --repeats 3 2>>"$OUT/rollout.log" \
    | tail -1 | tee -a "$OUT/rollout.jsonl" ;;
rollout-logprobs)  # 0.5B, a GRPO batch: the sampled tokens' log-probs returned (what the truncated-IS
  # correction needs) vs none (what the RL loop asks for without it)
  py benchmarks/gpu_rollout_sync.py logprobs --size 0.5b --prompts 256 --prompt-len 48 --repeats 3 2>>"$OUT/rollout.log" \
    | tail -1 | tee -a "$OUT/rollout.jsonl" ;;
sync)  # colocated CUDA IPC, 1.5B: median of 5 syncs and its phases. ZeRO-2: the engine reads the
  # trainer's parameters themselves (direct); ZeRO-3: gathered into one 4 GiB bucket buffer
  for z in 2 3; do
    py benchmarks/gpu_rollout_sync.py sync --size 1.5b --zero-stage $z --bucket-mb 4096 2>>"$OUT/sync.log" \
      | tail -1 | tee -a "$OUT/sync.jsonl"
  done ;;
mfu)  # the packed trainer next to a plain HF loop, same session (default attention and kernels), at the largest
  # budgets that fit 80 GB (1.5B: 60.6 GiB at 16,384; 0.5B: 46.7 GiB at 32,768); the trainer's GPU default
  # (8,192) leaves room for larger models, and is slower where the host is slow (BENCHMARKS.md, third round)
  for size in ${MFU_SIZES:-1.5b 0.5b}; do
    budget=$([ "$size" = 0.5b ] && echo 32768 || echo 16384)
    py benchmarks/hf_baseline.py --size $size 2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
    for z in ${MFU_STAGES:-2 3}; do
      py benchmarks/trainer_mfu.py --size $size --zero-stage $z --max-tokens $budget 2>>"$OUT/mfu.log" \
        | tail -1 | tee -a "$OUT/mfu.jsonl"
    done
  done ;;
mfu-kernels)  # 1.5B, ZeRO-2: without Liger's kernels (the mfu part uses them where liger-kernel is
  # installed; at 8,192 tokens, as without them 16,384 do not fit); the fused log-probs; FlexAttention
  RLHF_KERNELS=none py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 8192 \
    2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  RLHF_KERNELS=liger RLHF_LOGPROBS=fused py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 16384 \
    2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  RLHF_ATTENTION=flex_attention py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 16384 \
    2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl" ;;
mfu-logprobs)  # 1.5B, ZeRO-2, 16,384 tokens: the log-softmax of the logits block by block in PyTorch (the
  # default before the Triton kernels) against the kernels (the default), interleaved twice
  for path in blocks logits blocks logits; do
    RLHF_LOGPROBS=$path py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 16384 --steps 4 \
      2>>"$OUT/mfu.log" | tail -1 | tee -a "$OUT/mfu.jsonl"
  done ;;
profile)  # where the 1.5B ZeRO-2 step's GPU time goes: the top kernels, to profile.log
  py benchmarks/trainer_mfu.py --size 1.5b --zero-stage 2 --max-tokens 8192 --steps 1 --profile true \
    2>"$OUT/profile.log" | tail -1 | tee -a "$OUT/mfu.jsonl" ;;
logprobs)  # the output layer's logits + token_logprobs vs the fused path, 1.5B's width, bf16
  py benchmarks/output_layer_logprobs.py --device cuda --positions 12288 --hidden 1536 --dtypes bfloat16 \
    2>>"$OUT/logprobs.log" | tail -1 | tee -a "$OUT/logprobs.jsonl" ;;
sleep)  # engine asleep during a full fine-tuning update that does not fit beside it awake (1.5B on 80 GB;
  # SLEEP_SIZE=3b on a 141 GB H200, where the 1.5B pair fits awake)
  py benchmarks/sleep_wake.py --size "${SLEEP_SIZE:-1.5b}" --gpu-memory-utilization 0.5 --max-tokens 16384 2>>"$OUT/sleep.log" \
    | tail -1 | tee -a "$OUT/sleep.jsonl" ;;
offload)  # ZeRO-Offload (optimizer states on the host) in the same colocated step
  py benchmarks/sleep_wake.py --size 1.5b --zero-stage 2 --offload true --gpu-memory-utilization 0.3 --max-tokens 8192 \
    2>>"$OUT/sleep.log" | tail -1 | tee -a "$OUT/sleep.jsonl" ;;
grpo)  # each framework at its largest micro-batch that fits (GRPO_RUNS, ';'-separated, to choose): ours by
  # token budget (32,768 with logits ran out of memory beside the engine: the fused log-probs keep none),
  # TRL by rows per forward (16 was slower than 64 in every round, 128 faster than 64 in the fifth)
  IFS=';' read -ra runs <<< "${GRPO_RUNS:-ours --max-tokens 16384;ours --max-tokens 32768 --logprobs fused;trl --micro-batch 64;trl --micro-batch 128}"
  for run in "${runs[@]}"; do
    name=$(echo $run | tr -d ' -')
    py benchmarks/grpo_step.py $run --size 0.5b 2>"$OUT/grpo-$name.log" | tail -1 | tee -a "$OUT/grpo.jsonl"
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
*) echo "unknown part $part" >&2; exit 2 ;;
esac
done
