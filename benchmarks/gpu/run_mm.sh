#!/usr/bin/env bash
# Image-input measurements on the NVIDIA machine (issue 14). Run from the repo root in the same device call,
# after the CUDA build of llama-cpp-python (benchmarks/gpu/run_gpu.sh build, or the DECODE build script),
# which leaves it in .gpu-build/site:
#   bash benchmarks/gpu/run_gpu.sh build && bash benchmarks/gpu/run_mm.sh
# Needs .gpu/ggml-vocab-gemma-4.gguf (carried) to generate the synthetic text models when run_gpu.sh has not
# already made .gpu-models/E2B.gguf and 12B.gguf. Results: $OUT/mm_results.jsonl, $OUT/multimodal-gpu.md.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/.gpu-build/site:$PWD
export GEMMADESK_GEMMA4_VOCAB=${GEMMADESK_GEMMA4_VOCAB:-$PWD/.gpu/ggml-vocab-gemma-4.gguf}
python3 -c "import llama_cpp, sys; print('GPU offload:', llama_cpp.llama_supports_gpu_offload())"
python3 benchmarks/gpu/mm_measure.py --models "$PWD/.gpu-models" --out "$OUT" --sizes "${MM_SIZES:-E2B,12B}" \
  --budget-s "${MM_BUDGET_S:-300}" 2>&1 | tail -40
