#!/usr/bin/env bash
# The pose engine on a GPU: the golden parity tests on the device, then the bench at batch 1, 4 and 16.
#
#   bash scripts/gpu_check.sh [DEVICE]                 build here (offline) and run; DEVICE defaults to cuda:0
#   bash scripts/gpu_check.sh --build-only [DIR]       build on a development machine into DIR (default
#                                                      target/gpu-check): the test and bench binaries, the
#                                                      weights and the fixtures (~45 MiB), to copy over
#   GPU_CHECK_BIN=DIR bash scripts/gpu_check.sh [DEVICE]   run what --build-only made (no Rust toolchain needed)
#
# Nothing is downloaded: the build is `cargo --offline`, so the crates must already be in ~/.cargo (run
# `cargo fetch` once where there is a network; the CUDA build adds cudarc and candle-kernels). Building
# needs nvcc (CUDA 12 or 13; candle-kernels compiles its kernels to PTX, cudarc reads the version from it);
# CUDA 13 from PyPI's `nvidia-cuda-nvcc` and `nvidia-cuda-runtime` wheels does on a machine without the
# toolkit (put their bin/ on PATH and lib/ on LD_LIBRARY_PATH). GPU_FEATURES=cudnn builds with cuDNN.
# Running needs the NVIDIA driver and the CUDA runtime libraries (cudarc loads them dynamically).
# Budget (an estimate, not yet measured on such a machine): about 5 minutes to build on 16 cores, under
# 2 minutes to run.
set -euo pipefail
cd "$(dirname "$0")/.."
features=${GPU_FEATURES-cuda}   # GPU_FEATURES= (empty): a CPU-only build, to try the script without a GPU
runs=${GPU_CHECK_RUNS:-30}

build() { # DIR: release binaries of the golden tests and the bench, with the data they read
  local dir=$1
  command -v cargo >/dev/null || { echo "no cargo here: build with --build-only elsewhere, copy DIR, run with GPU_CHECK_BIN=DIR" >&2; exit 2; }
  [ -z "$features" ] || command -v nvcc >/dev/null ||
    { echo "no nvcc on PATH: the CUDA build compiles candle's kernels with it" >&2; exit 2; }
  mkdir -p "$dir/weights" "$dir/tests/fixtures/pose" "$dir/tests/fixtures/detect"
  local feat=()
  [ -n "$features" ] && feat=(--features "$features")
  cargo build --offline --release -p haven-pose "${feat[@]}" --example bench
  local golden
  golden=$(cargo test --offline --release -p haven-pose "${feat[@]}" --test golden --no-run 2>&1 |
    tee /dev/stderr | sed -n 's/.*Executable tests\/golden.rs (\(.*\))/\1/p' | tail -1)
  [ -n "$golden" ] || { echo "could not find the golden test binary" >&2; exit 1; }
  local detect
  detect=$(cargo test --offline --release -p haven-pose "${feat[@]}" --test detect --no-run 2>&1 |
    tee /dev/stderr | sed -n 's/.*Executable tests\/detect.rs (\(.*\))/\1/p' | tail -1)
  [ -n "$detect" ] || { echo "could not find the detect test binary" >&2; exit 1; }
  cp "$detect" "$dir/detect"
  cp tests/fixtures/detect/* "$dir/tests/fixtures/detect/"
  cp target/release/examples/bench "$dir/bench"
  cp "$golden" "$dir/golden"
  cp -L weights/yolo11n-pose.safetensors "$dir/weights/"
  cp tests/fixtures/pose/*.safetensors tests/fixtures/pose/detections.json "$dir/tests/fixtures/pose/"
  du -sh "$dir"
}

if [ "${1:-}" = "--build-only" ]; then
  build "${2:-target/gpu-check}"
  exit 0
fi
device=${1:-cuda:0}
if [ -n "${GPU_CHECK_BIN:-}" ]; then
  dir=$GPU_CHECK_BIN
else
  dir=target/gpu-check
  time build "$dir"
fi
dir=$(cd "$dir" && pwd)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== golden parity tests, the CPU ones and the same goldens on $device"
status=0
HAVEN_REPO_ROOT=$dir HAVEN_TEST_DEVICE=$device "$dir/golden" --test-threads=1 --nocapture 2>&1 |
  grep -E '^test |max \|diff|device|skipped|panicked|test result' || status=$?
echo "== object-detection goldens (YOLOv8n, YOLO11n detect) on the CPU and on $device"
HAVEN_REPO_ROOT=$dir HAVEN_TEST_DEVICE=$device "$dir/detect" --test-threads=1 --nocapture 2>&1 |
  grep -E '^test |max \|diff|on cuda|on metal|skipped|panicked|test result' || status=$?

echo "== bench on $device, 640x640, batch 1, 4 and 16 ($runs runs each)"
BENCH_DEVICE=$device BENCH_BATCH=1,4,16 BENCH_SIZES=640x640,640x384 "$dir/bench" "$dir/weights/yolo11n-pose.safetensors" "$runs"
echo "== the same on the CPU (HAVEN's kernels), batch 1"
BENCH_SIZES=640x640 "$dir/bench" "$dir/weights/yolo11n-pose.safetensors" 10
[ "$status" -eq 0 ] || echo "the golden tests FAILED (exit $status)"
exit "$status"
