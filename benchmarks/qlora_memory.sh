#!/usr/bin/env bash
# Trainer peak GPU memory of full fine-tuning vs LoRA vs QLoRA: the same DAPO run (2 steps, the
# 0.36B model of Qwen2.5-0.5B's shape, vLLM colocated) three times, one JSON line each.
# Needs a CUDA device, vLLM and (for QLoRA) bitsandbytes.
#   bash benchmarks/qlora_memory.sh [full|lora|qlora ...]      (default: all three)
# Per line: memory/trainer_peak_gib (torch.cuda.max_memory_allocated of the trainer process,
# its maximum over the steps), timing/step_s and timing/update_s per step, and whether every
# numeric training metric was finite. RUN_TIMEOUT (s, default 900) bounds each run.
# Logs and run directories under $OUT (default benchmarks/results).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-}:$PWD" PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 NCCL_NVLS_ENABLE=0 \
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RLHF_CACHE="${RLHF_CACHE:-/tmp/rlhf-cache}"
# the same model and colocated settings as benchmarks/gpu_suite.sh
QWEN05="model.tiny.hidden_size=896 model.tiny.intermediate_size=4864 model.tiny.num_layers=24 model.tiny.num_heads=14 model.tiny.num_kv_heads=2"
GPU="generator.backend=vllm placement.mode=colocate model.dtype=bfloat16 generator.gpu_memory_utilization=0.3 run.progress=false"
RUN="warmstart.steps=0 run.steps=2 run.eval_every=0 data.num_eval=16 ${EXTRA:-}"

settings=("$@"); [ ${#settings[@]} -gt 0 ] || settings=(full lora qlora)
for s in "${settings[@]}"; do
  case "$s" in
    full) args="" ;;
    lora) args="model.lora_rank=16" ;;
    qlora) args="model.quantization=nf4 model.lora_rank=16" ;;
    *) echo "unknown setting $s" >&2; exit 2 ;;
  esac
  rm -rf "$OUT/qlora-runs/$s"
  t0=$(date +%s)
  timeout "${RUN_TIMEOUT:-900}" python3 -m rlhf.recipes.dapo $QWEN05 $GPU $RUN $args run.output_dir="$OUT/qlora-runs" run.name="$s" \
    > "$OUT/qlora-$s.log" 2>&1
  rc=$?
  python3 - "$s" "$args" "$rc" "$(( $(date +%s) - t0 ))" "$OUT/qlora-runs/$s/metrics.jsonl" "$OUT/qlora-$s.log" <<'EOF'
import json, math, sys
setting, args, rc, wall, path, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
try:
    records = [json.loads(line) for line in open(path)]
except OSError:
    records = []
steps = [r for r in records if "timing/step_s" in r]
bad = sorted({k for r in steps for k, v in r.items()
              if isinstance(v, float) and not math.isfinite(v)})
out = {"setting": setting, "args": args, "rc": rc, "wall_s": wall, "steps": len(steps),
       "trainer_peak_gib": max((r["memory/trainer_peak_gib"] for r in steps if "memory/trainer_peak_gib" in r), default=None),
       "step_s": [round(r["timing/step_s"], 3) for r in steps],
       "update_s": [round(r.get("timing/update_s", float("nan")), 3) for r in steps],
       "loss": [r.get("actor/loss", r.get("actor/pg_loss")) for r in steps],
       "grad_norm": [r.get("actor/grad_norm") for r in steps],
       "skipped_steps": [r.get("actor/skipped_steps") for r in steps],
       "all_finite": bool(steps) and not bad, "non_finite": bad}
if rc != 0 or not steps:  # the failure's last lines, to read without the log
    out["log_tail"] = open(log, errors="replace").read().splitlines()[-8:]
print(json.dumps(out))
EOF
done
