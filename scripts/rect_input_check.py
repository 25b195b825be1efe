#!/usr/bin/env python3
"""Does a rectangular network input (640x480 for a 4:3 frame) change what the model finds, in
onnxruntime too? The golden ONNX export is fixed at 640x640; this rewrites its shape constants
(attention reshapes, DFL reshapes, anchor grid and strides) for another input size and runs the
same letterboxed frame at 640x640, 640x512 and 640x480, printing the people found (score > 0.25,
NMS 0.7) in source pixels. Compare with HAVEN's own engine:

  python3 scripts/rect_input_check.py [IMAGE]          # default: ../shared/golden/yolo11n-pose/vtest_frame50.png
  for s in 640x640 640x512 640x480; do HAVEN__MODEL__INPUT_WIDTH=${s%x*} HAVEN__MODEL__INPUT_HEIGHT=${s#*x} \
    ./target/debug/haven detect IMAGE; done

Needs `pip install onnx onnxruntime numpy` and ffmpeg (the frame is scaled to 640x480 with ffmpeg's
bilinear filter, close to but not bit-equal with OpenCV's).
"""
import os, subprocess, sys, tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "..", "shared", "golden", "yolo11n-pose", "yolo11n-pose.onnx")


def session(w, h):
    m = onnx.load(MODEL)
    n = sum((w // s) * (h // s) for s in (8, 16, 32))
    ax, ay, st = [], [], []
    for s in (8, 16, 32):
        for y in range(h // s):
            for x in range(w // s):
                ax.append(x); ay.append(y); st.append(s)
    ax, ay, st = (np.array(v, np.float32) for v in (ax, ay, st))
    grid = np.stack([ax, ay])
    new = {
        "/model.23/Constant_25_output_0": grid,
        "/model.23/Constant_26_output_0": st[None],
        "/model.23/Constant_15_output_0": (grid + 0.5)[None],
        "/model.23/Constant_16_output_0": (grid + 0.5)[None],
        "/model.23/Constant_18_output_0": st[None],
        "/model.10/m/m.0/attn/Constant_output_0": np.array([1, 2, 128, (w // 32) * (h // 32)], np.int64),
        "/model.10/m/m.0/attn/Constant_3_output_0": np.array([1, 128, h // 32, w // 32], np.int64),
        "/model.23/dfl/Constant_output_0": np.array([1, 4, 16, n], np.int64),
        "/model.23/dfl/Constant_1_output_0": np.array([1, 4, n], np.int64),
    }
    for i in m.graph.initializer:
        if i.name in new:
            i.CopyFrom(numpy_helper.from_array(new[i.name].astype(numpy_helper.to_array(i).dtype), i.name))
    del m.graph.value_info[:]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = h, w
    m.graph.output[0].type.tensor_type.shape.dim[2].dim_value = n
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main():
    image = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "golden", "yolo11n-pose", "vtest_frame50.png")
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "frame.rgb")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", image, "-vf", "scale=640:480:flags=bilinear",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", raw], check=True)
        src_w = int(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width",
                                    "-of", "csv=p=0", image], check=True, capture_output=True, text=True).stdout)
        img = np.fromfile(raw, np.uint8).reshape(480, 640, 3).astype(np.float32) / 255.0
    for w, h in ((640, 640), (640, 512), (640, 480)):
        top = (h - 480) // 2
        canvas = np.full((h, w, 3), 114 / 255.0, np.float32)
        canvas[top:top + 480] = img
        out = session(w, h).run(None, {"images": canvas.transpose(2, 0, 1)[None]})[0][0]
        kept = []
        for i in np.argsort(-out[4]):
            if out[4, i] < 0.25:
                break
            cx, cy, bw, bh = out[:4, i]
            box = [cx - bw / 2, cy - bh / 2 - top, cx + bw / 2, cy + bh / 2 - top]
            if all(iou(box, k[1]) < 0.7 for k in kept):
                kept.append((float(out[4, i]), box))
        k = src_w / 640.0
        print(f"{w}x{h}: {len(kept)} people", [(round(s, 2), [round(v * k) for v in b]) for s, b in kept])


if __name__ == "__main__":
    main()
