#!/usr/bin/env bash
# Build llama.cpp ONCE from the sources vendored in llama-cpp-python's sdist (the version GemmaDesk pins):
# shared libraries (ggml with CUDA for sm_90, llama, mtmd) plus llama.cpp's own tools (llama-bench,
# llama-completion), then give the llama_cpp Python package of the same sdist exactly these libraries.
# GemmaDesk's engine and llama.cpp's tools then run the very same build (one compile instead of two).
#
#   bash benchmarks/gpu/build_llama.sh SDIST.tar.gz DEST [extra cmake flags ...]
#
# SDIST: llama-cpp-python-0.3.36 sdist, may be slimmed (without .git, vendor/llama.cpp/models, docs).
# DEST/bin: llama-bench, llama-completion and the .so files; DEST/site: put it on PYTHONPATH
# (``import llama_cpp`` loads DEST/site/llama_cpp/lib/*.so, which are copies of DEST/bin's).
# Defaults: -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 (H100/H200); pass -DGGML_CUDA=OFF for a CPU build.
# Extra targets (the multimodal work wants llama-mtmd-cli): TARGETS="... llama-mtmd-cli" bash ...
# CCCL_INCLUDE=DIR: compile against these CCCL headers (e.g. the nvidia-cuda-cccl wheel's
# nvidia/cu13/include/cccl) instead of the toolkit's: with CCCL >= 3.2 ggml's CUDA top-k is cub's one-pass
# DeviceTopK instead of a full segmented sort of the 262,144 logits (what GemmaDesk's device sampling runs
# every token). Checked first on top-k.cu alone; if that fails the toolkit's CCCL is used.
# About 5 minutes on 16 cores for CUDA. Idempotent: an existing DEST/site is reused.
set -euo pipefail
SDIST=$(realpath "$1"); DEST=$(realpath -m "$2"); shift 2
JOBS=${JOBS:-$(nproc)}
TARGETS=${TARGETS:-"llama ggml mtmd llama-bench llama-completion"}
if [ -f "$DEST/site/llama_cpp/lib/libllama.so" ] && [ -x "$DEST/bin/llama-bench" ]; then
  echo "build_llama: $DEST already built"; exit 0
fi
WORK=${WORK:-/tmp/llama-build}
rm -rf "$WORK" && mkdir -p "$WORK" "$DEST"
tar xzf "$SDIST" -C "$WORK"
PKG=$(ls -d "$WORK"/llama_cpp_python-*)
SRC=$PKG/vendor/llama.cpp
t0=$SECONDS
configure() {
  rm -rf "$WORK/build"
  cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "$@" > "$DEST/cmake-configure.log" 2>&1 \
    || { tail -30 "$DEST/cmake-configure.log"; exit 1; }
}
if [ -n "${CCCL_INCLUDE:-}" ]; then
  configure "-DCMAKE_CUDA_FLAGS=-I$CCCL_INCLUDE" "$@"
  PROBE=$(cd "$WORK/build" && ninja -t targets all | grep -o '^[^:]*/top-k\.cu\.o' | head -1)
  if [ -n "$PROBE" ] && cmake --build "$WORK/build" --target "$PROBE" > "$DEST/cccl-probe.log" 2>&1; then
    echo "build_llama: using CCCL headers from $CCCL_INCLUDE ($(grep -m1 -o 'CCCL_VERSION [0-9]*' \
      "$CCCL_INCLUDE/cuda/std/__cccl/version.h"))"
  else
    echo "build_llama: top-k.cu does not compile against $CCCL_INCLUDE; using the toolkit's CCCL"
    tail -5 "$DEST/cccl-probe.log"
    configure "$@"
  fi
else
  configure "$@"
fi
# shellcheck disable=SC2086
if ! cmake --build "$WORK/build" --target $TARGETS -j "$JOBS" > "$DEST/cmake-build.log" 2>&1; then
  if grep -q -- "-I${CCCL_INCLUDE:-/nonexistent}" "$WORK/build/CMakeCache.txt" 2>/dev/null; then
    echo "build_llama: the build failed with the CCCL headers from $CCCL_INCLUDE; again with the toolkit's"
    grep -m3 "error" "$DEST/cmake-build.log"
    configure "$@"
    cmake --build "$WORK/build" --target $TARGETS -j "$JOBS" > "$DEST/cmake-build.log" 2>&1 \
      || { tail -40 "$DEST/cmake-build.log"; exit 1; }
  else
    tail -40 "$DEST/cmake-build.log"; exit 1
  fi
fi
echo "build_llama: compiled in $((SECONDS - t0)) s"
mkdir -p "$DEST/bin" "$DEST/site"
cp -a "$WORK"/build/bin/* "$DEST/bin/"
# The Python package: llama-cpp-python's pure-Python part with the libraries just built.
cp -a "$PKG/llama_cpp" "$DEST/site/"
mkdir -p "$DEST/site/llama_cpp/lib"
cp -a "$WORK"/build/bin/lib*.so* "$DEST/site/llama_cpp/lib/"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$PKG/llama_cpp/__init__.py")
mkdir -p "$DEST/site/llama_cpp_python-$VERSION.dist-info"
printf 'Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: %s\n' "$VERSION" \
  > "$DEST/site/llama_cpp_python-$VERSION.dist-info/METADATA"
echo "build_llama: $DEST/bin and $DEST/site ready (llama-cpp-python $VERSION)"
