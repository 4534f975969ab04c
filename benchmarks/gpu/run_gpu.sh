#!/usr/bin/env bash
# GPU validation, run on the NVIDIA machine from the repo root (the device tool's `run`):
#   bash benchmarks/gpu/run_gpu.sh build     # unpack + build llama-cpp-python with CUDA, make synthetic GGUFs
#   bash benchmarks/gpu/run_gpu.sh measure   # estimate vs llama.cpp vs NVML, decode speed engine vs bare
#   bash benchmarks/gpu/run_gpu.sh oom       # the engine's retry after a real GPU out-of-memory
#   bash benchmarks/gpu/run_gpu.sh mm        # issue 14: build once, image input on E2B/12B, decode check
#   bash benchmarks/gpu/run_gpu.sh decode    # issue 15: llama.cpp built ONCE with CUDA (build_llama.sh: shared
#                                            # libs + llama-bench/llama-completion/mtmd, used by llama_cpp too),
#                                            # then decode_bench.py: engine vs llama-bench, llama-bench for all
#                                            # sizes, load-to-first-token cold/warm vs llama-completion
# Needs in .gpu/ (carried, git-ignored): llama-cpp-python-0.3.36-slim.tar.gz (sdist without .git, models,
# docs), ggml-vocab-gemma-4.gguf, and the wheels missing there (diskcache, gguf, platformdirs).
# Everything it builds stays in git-ignored folders of the repo (.gpu-build/, .gpu-models/) so a second
# call on the same warm machine reuses it. Results go to $OUT (or ./gpu-out).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SITE=$PWD/.gpu-build/site
MODELS=$PWD/.gpu-models
export PYTHONPATH=$SITE:$PWD
export GEMMADESK_GEMMA4_VOCAB=$PWD/.gpu/ggml-vocab-gemma-4.gguf
mkdir -p "$SITE" "$MODELS"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .gpu/*.whl >/dev/null 2>&1 || true
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1

build() {
  if python3 -c "import llama_cpp,sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" 2>/dev/null; then
    echo "CUDA build already there"; return 0; fi
  local t0=$SECONDS
  rm -rf /tmp/lcp && mkdir -p /tmp/lcp && tar xzf .gpu/llama-cpp-python-0.3.36-slim.tar.gz -C /tmp/lcp
  (cd /tmp/lcp/llama_cpp_python-0.3.36 && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" \
     CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps --no-index \
     --target "$SITE" . > "$OUT/build.log" 2>&1)
  echo "build rc=$? in $((SECONDS - t0)) s" | tee -a "$OUT/build.log"
}

gen() {
  for s in "$@"; do
    [ -s "$MODELS/$s.gguf" ] && continue
    local t0=$SECONDS
    python3 -m tests.support.synth_gemma4 "$MODELS/$s.gguf.tmp" --size "$s" --qtype Q4_0 >> "$OUT/gen.log" 2>&1 \
      && mv "$MODELS/$s.gguf.tmp" "$MODELS/$s.gguf"
    echo "generated $s in $((SECONDS - t0)) s: $(stat -c %s "$MODELS/$s.gguf" 2>/dev/null) bytes" | tee -a "$OUT/gen.log"
  done
}

smoke() {  # the plainest possible load, to tell our code's problems from llama.cpp's
  python3 -X faulthandler -c "
import sys, time
from llama_cpp import Llama
t = time.time()
m = Llama(sys.argv[1], n_gpu_layers=-1, n_ctx=4096, swa_full=False, flash_attn=True, verbose=True)
m.eval(m.tokenize(b'hello world'))
print('SMOKE OK', round(time.time() - t, 2), 's')
" "$MODELS/E2B.gguf" > "$OUT/smoke.log" 2>&1
  echo "smoke rc=$?"; grep -E "SMOKE|rror|Fatal|fault" "$OUT/smoke.log" | head -20; tail -25 "$OUT/smoke.log"
}

case "${1:-all}" in
  decode)  # one call on a fresh machine, ~9 min: build + generate in parallel, then measure
    T0=$SECONDS
    LLAMA=${LLAMA:-/tmp/llama-cuda}
    (gen $(echo "${SIZES:-E2B,12B,E4B,26B-A4B,31B}" | tr , ' ')) &
    CCCL=$(ls -d "$SITE"/nvidia/cu*/include/cccl 2>/dev/null | head -1)  # from a carried nvidia-cuda-cccl wheel
    [ -n "$CCCL" ] && export CCCL_INCLUDE=$CCCL
    bash benchmarks/gpu/build_llama.sh .gpu/llama-cpp-python-0.3.36-slim.tar.gz "$LLAMA" 2>&1 | tee "$OUT/build.log"
    cp "$LLAMA"/cmake-*.log "$OUT/" 2>/dev/null
    wait
    export PYTHONPATH=$LLAMA/site:$SITE:$PWD
    python3 -c "import llama_cpp; print('llama_cpp', llama_cpp.__file__, 'gpu offload', llama_cpp.llama_supports_gpu_offload())"
    python3 benchmarks/gpu/decode_bench.py --models "$MODELS" --bin "$LLAMA/bin" --out "$OUT" \
      --budget-s $(( ${TOTAL_S:-560} - (SECONDS - T0) )) --sizes "${SIZES:-E2B,E4B,12B,26B-A4B,31B}" \
      --compare "${COMPARE:-E2B,12B}" --first-token "${FIRST_TOKEN:-1}" 2> "$OUT/decode_bench.err"
    tail -5 "$OUT/decode_bench.err"
    ;;
  mm)  # issue 14 on the GPU, one call on a fresh machine: build llama.cpp once (with mtmd) while the text
      # models are generated, then image input (mm_measure.py) and a short decode check of the merged engine
    T0=$SECONDS
    LLAMA=${LLAMA:-/tmp/llama-cuda}
    MM_SIZES=${MM_SIZES:-E2B,12B}
    (gen $(echo "$MM_SIZES" | tr , ' ')) &
    CCCL=$(ls -d "$SITE"/nvidia/cu*/include/cccl 2>/dev/null | head -1)
    [ -n "$CCCL" ] && export CCCL_INCLUDE=$CCCL
    bash benchmarks/gpu/build_llama.sh .gpu/llama-cpp-python-0.3.36-slim.tar.gz "$LLAMA" 2>&1 | tee "$OUT/build.log"
    wait
    export PYTHONPATH=$LLAMA/site:$SITE:$PWD
    python3 -c "import llama_cpp; print('llama_cpp gpu offload', llama_cpp.llama_supports_gpu_offload())"
    LEFT=$(( ${TOTAL_S:-570} - (SECONDS - T0) ))
    python3 benchmarks/gpu/mm_measure.py --models "$MODELS" --out "$OUT" --sizes "$MM_SIZES" \
      --budget-s $(( ${DECODE:-1} ? LEFT * 6 / 10 : LEFT - 10 )) 2> "$OUT/mm_measure.err" | tail -30
    tail -5 "$OUT/mm_measure.err"
    [ "${DECODE:-1}" = 0 ] || python3 benchmarks/gpu/decode_bench.py --models "$MODELS" --bin "$LLAMA/bin" --out "$OUT" \
      --budget-s $(( ${TOTAL_S:-570} - (SECONDS - T0) - 10 )) --sizes E2B --compare "${COMPARE:-E2B,12B}" \
      --first-token 0 2> "$OUT/decode_bench.err"
    tail -5 "$OUT/decode_bench.err"
    ;;
  all)  # everything in one call on a fresh machine: build and generate in parallel, then measure
    T0=$SECONDS
    (gen E2B E4B 12B 26B-A4B 31B) &
    build
    wait
    smoke
    python3 -m gemmadesk hw --json > "$OUT/hw.json" 2> "$OUT/hw.err"
    python3 -m gemmadesk hw > "$OUT/hw.txt" 2>&1
    python3 benchmarks/gpu/measure.py --models "$MODELS" --out "$OUT" --budget-s $(( ${TOTAL_S:-570} - (SECONDS - T0) )) \
      --sizes "${SIZES:-E2B,E4B,12B,26B-A4B,31B}"
    ;;
  build)
    gen E2B E4B 12B &
    build
    wait
    gen 26B-A4B 31B
    ;;
  oom)  # a real GPU out-of-memory at load: the engine must retry with fewer layers, then the CPU
    gen 31B &
    build
    wait
    python3 tests/engine/gpu_oom_check.py "$MODELS/31B.gguf" 2>&1 | grep -v "^llama_\|^load_tensors\|^print_info\|^~llama" | tee "$OUT/oom.log"
    ;;
  measure)
    build
    python3 -m gemmadesk hw --json > "$OUT/hw.json" 2> "$OUT/hw.err"
    python3 -m gemmadesk hw > "$OUT/hw.txt" 2>&1
    python3 benchmarks/gpu/measure.py --models "$MODELS" --out "$OUT" --budget-s "${BUDGET_S:-500}" \
      --sizes "${SIZES:-E2B,E4B,12B,26B-A4B,31B}"
    ;;
esac
df -h . | tail -1
