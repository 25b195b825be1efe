#!/usr/bin/env python3
"""onnxruntime's own int8 as the anchor for HAVEN's 8-bit path: quantize_static (QDQ, the
convolutions, per-channel int8 weights, uint8 activations, MinMax calibration) of the golden
yolo11n-pose ONNX export,
calibrated on frames of the same kind, then fp32 and int8 run on the same frames with the same
agreement measures as examples/int8_agreement.rs (people matched at IoU >= 0.9, box and keypoint
error in 640-input pixels, score shift).

    cargo run --example int8_agreement -- --dump /tmp/frames.bgr      # writes the frames
    python3 scripts/int8_onnxruntime.py /tmp/frames.bgr SETS [OUT.onnx]

FRAMES: 640x640x3 BGR u8 frames one after another; SETS: the sizes of the consecutive sets, named,
e.g. "golden:4,videos:200,falls:423". The int8 model is written to OUT.onnx (default
/tmp/yolo11n-pose.int8.qdq.onnx) for scripts/int8_vs_onnxruntime.sh; calibration uses every 8th
frame (at most 64).
"""
import sys
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)

FP32 = "../shared/golden/yolo11n-pose/yolo11n-pose.onnx"
frames_path, sets_arg = sys.argv[1], sys.argv[2]
out = sys.argv[3] if len(sys.argv) > 3 else "/tmp/yolo11n-pose.int8.qdq.onnx"
frames = np.fromfile(frames_path, dtype=np.uint8).reshape(-1, 640, 640, 3)
sets = [(n, int(c)) for n, c in (s.split(":") for s in sets_arg.split(","))]
assert sum(c for _, c in sets) == len(frames), f"{len(frames)} frames, sets {sets}"


def tensor(bgr):
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter([{"images": tensor(f)} for f in frames[::8][:64]])

    def get_next(self):
        return next(self.it, None)


# Only the convolutions, as HAVEN's path: quantizing every op also quantizes the output's final
# Concat, whose one uint8 scale spans 640-pixel coordinates and 0-1 scores, so no score survives.
quantize_static(FP32, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"])
so = ort.SessionOptions()
so.intra_op_num_threads = 2
sess = {p: ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
        for p, m in (("fp32", FP32), ("int8", out))}


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def people(o, conf=0.25, thr=0.7):
    o = o[0]
    keep = np.where(o[4] > conf)[0]
    keep = keep[np.argsort(-o[4, keep])]
    boxes = []
    for i in keep:
        cx, cy, w, h = o[:4, i]
        b = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if all(iou(b, k[0]) <= thr for k in boxes):
            boxes.append((b, float(o[4, i]), o[5:, i].reshape(17, 3)))
        if len(boxes) >= 300:
            break
    return boxes


def stats(pairs):
    n = m = extra = conf = conf_m = 0
    be, ke, ss = [], [], []
    for f, q in pairs:
        n += len(f)
        conf += sum(1 for a in f if a[1] >= 0.5)
        cand = sorted(((iou(a[0], b[0]), i, j) for i, a in enumerate(f) for j, b in enumerate(q)),
                      reverse=True)
        di, dj = set(), set()
        for v, i, j in cand:
            if v < 0.9 or i in di or j in dj:
                continue
            di.add(i); dj.add(j); m += 1
            a, b = f[i], q[j]
            conf_m += a[1] >= 0.5
            be.append(np.mean(np.abs(np.array(a[0]) - np.array(b[0]))))
            ss.append(b[1] - a[1])
            vis = a[2][:, 2] >= 0.5
            ke += list(np.hypot(*(a[2][vis, :2] - b[2][vis, :2]).T))
        extra += sum(1 for b in q if not any(iou(a[0], b[0]) >= 0.5 for a in f))
    p = lambda v, q: float(np.percentile(v, q, method="closest_observation")) if v else float("nan")
    return (f"{n} | {m} ({100 * m / max(n, 1):.1f} %) | {conf_m} of {conf} ({100 * conf_m / max(conf, 1):.1f} %) | {extra} | {p(be, 50):.2f} / {p(be, 95):.2f} | "
            f"{p(ke, 50):.2f} / {p(ke, 95):.2f} | {np.mean(ss) if ss else float('nan'):+.4f} / "
            f"{p(list(np.abs(ss)), 95):.4f} |")


print(f"onnxruntime {ort.__version__}: int8 QDQ (quantize_static, per-channel, MinMax on "
      f"{len(frames[::8][:64])} frames) against fp32")
print("| frames | n | fp32 people | matched at IoU >= 0.9 | those scoring >= 0.5: matched | int8 extra people "
      "| box error median / p95 (px) | keypoint error median / p95 (px) | score shift mean / p95 abs |")
print("|---|---|---|---|---|---|---|---|---|")
at = 0
for name, count in sets:
    pairs = []
    for f in frames[at:at + count]:
        x = tensor(f)
        pairs.append(tuple(people(sess[p].run(None, {"images": x})[0]) for p in ("fp32", "int8")))
    at += count
    print(f"| {name} | {count} | {stats(pairs)}")
