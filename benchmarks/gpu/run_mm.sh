#!/usr/bin/env bash
# Superseded by `bash benchmarks/gpu/run_gpu.sh mm` (one call: builds llama.cpp once with mtmd, then
# mm_measure.py for E2B and 12B and a short decode check). Kept so older notes that name it still work.
exec bash "$(dirname "$0")/run_gpu.sh" mm "$@"
