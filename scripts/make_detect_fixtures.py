#!/usr/bin/env python3
"""Makes the object-detection golden fixtures in tests/fixtures/detect/ (run once; tests never run Python).

No registry ships YOLOv8/YOLO11 detect weights, so, like the seeded YOLOv8n-pose of ../shared/golden, this
builds two detect models from Ultralytics' reference yaml files with seeded random weights (convolution
weights and every BatchNorm's weight, bias, running mean and running variance; the statistics measured on
a few real images, then perturbed at random: see `randomise`), in eval mode:

* YOLOv8n detect (`yolov8n.yaml`, 80 classes, COCO names as the real `yolov8n.pt` has them), stored as an
  fp16 safetensors state dict **without** class-name metadata (the engine then names the 80 classes COCO's);
* YOLO11n detect (`yolo11n.yaml` with nc=4, custom names bicycle/car/dog/package), stored as an Ultralytics
  `.pt` checkpoint (fp16, written by Ultralytics' own `Model.save`): the Rust tests convert it with
  `haven convert-weights`' code, which reads its task and names into the safetensors metadata.

Each model is saved, reloaded from its fp16 checkpoint and exported to ONNX by Ultralytics (opset 17, no
simplification), so the ONNX reference runs exactly the fp16-rounded weights the engine loads. onnxruntime runs
it on zidane.jpg (tests/fixtures/pose/zidane.jpg, 1280x720) letterboxed by Ultralytics' `LetterBox` (pad 114):
YOLOv8n at 320x320, YOLO11n at 640x640. Written per model: `<name>_io.safetensors` with
`letterboxed_rgb_hwc_u8` [H, W, 3] and the raw `output0` [1, 4 + nc, N] (f32), and in `detections.json` the
final detections of Ultralytics' own `non_max_suppression` (conf 0.25, IoU 0.7, max_det 300, class-aware)
+ `scale_boxes` on that output, in source-image pixels, also with a class filter (`classes=`).

Random weights give boxes everywhere or nowhere: the last class convolution's bias (cv3.*.2.bias) is drawn
seeded, N(0, 0.5) per class, and then shifted by one constant (searched here, deterministic) so that 10-40
detections pass conf 0.25 after NMS and no anchor's best score lies within 3e-4 of the threshold (so
that float rounding in another runtime cannot change the set). The shift found is printed and recorded.

Run (CPU is enough, about a minute):

    python3 -m venv /tmp/venv-ul && /tmp/venv-ul/bin/pip install torch torchvision ultralytics onnx onnxruntime safetensors
    /tmp/venv-ul/bin/python scripts/make_detect_fixtures.py

Made with torch 2.15.0, torchvision 0.29.2, ultralytics 8.4.190, onnx 1.23.2, onnxruntime 1.32.0,
safetensors 0.8.0, opencv-python 5.0.0 (Python 3.11). Licence of the generated weights: random numbers, but
the architecture and export are Ultralytics' (AGPL-3.0).
"""

import copy
import json
import math
import pathlib
import sys
import tempfile

import cv2
import numpy as np
import onnxruntime as ort
import torch
from safetensors.numpy import save_file as save_np
from safetensors.torch import save_file as save_torch
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox
from ultralytics.nn.modules import DFL
from ultralytics.utils import ops
from ultralytics.utils.nms import non_max_suppression

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/detect"
IMAGE = ROOT / "tests/fixtures/pose/zidane.jpg"
CONF, IOU = 0.25, 0.7
# no anchor's best class score within this of CONF (onnxruntime and HAVEN differ by ~1e-5)
MARGIN = 3e-4

COCO = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]

MODELS = [
    # name, yaml, nc, names, input (w, h), seed, how it is stored
    ("yolov8n-detect-random", "yolov8n.yaml", 80, COCO, (320, 320), 8, "safetensors"),
    ("yolo11n-detect-random", "yolo11n.yaml", 4, ["bicycle", "car", "dog", "package"], (640, 640), 11, "pt"),
]


def randomise(model: torch.nn.Module, seed: int, calib: torch.Tensor) -> None:
    """Seeded random weights and BatchNorm parameters and statistics (the DFL's fixed bins stay).

    Plain random weights either fade the signal to a constant (every anchor alike) or blow it up, within
    a few of the ~250 layers. So the BatchNorm statistics are first measured on `calib` (a few real
    images; one pass in training mode with a cumulative average), as a trained network's would be, and
    then perturbed at random: running_var x U(0.7, 1.4), running_mean + N(0, 0.2) x std.
    """
    g = torch.Generator().manual_seed(seed)
    dfl = {id(m.conv) for m in model.modules() if isinstance(m, DFL)}
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and id(m) not in dfl:
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        for m in bns:
            n = m.num_features
            m.weight.copy_(0.6 + 0.8 * torch.rand(n, generator=g))
            m.bias.copy_(torch.randn(n, generator=g) * 0.3)
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
        model.train()
        model(calib)
        for m in bns:
            n = m.num_features
            std = m.running_var.sqrt()
            m.running_mean.add_(torch.randn(n, generator=g) * 0.2 * std)
            m.running_var.mul_(0.7 + 0.7 * torch.rand(n, generator=g))
            m.momentum = 0.03
    model.eval()


def calib(w, h):
    """The calibration batch: the fixture images beside zidane.jpg and their mirror images."""
    imgs = []
    for name in ["messi5.jpg", "basketball1.png", "vtest_frame50.png", "zidane.jpg"]:
        rgb = letterbox(cv2.imread(str(IMAGE.parent / name)), (w, h))
        t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        imgs += [t, t.flip(2)]
    return torch.stack(imgs)


def cls_biases(head):
    return [seq[-1].bias for seq in head.cv3]


def letterbox(img, size):
    w, h = size
    lb = LetterBox(new_shape=(h, w), auto=False, scale_fill=False, scaleup=True, center=True)
    bgr = lb(image=img)
    return np.ascontiguousarray(bgr[:, :, ::-1])  # RGB HWC u8


def nms_dets(out0: np.ndarray, src_hw, net_hw, classes=None):
    pred = non_max_suppression(torch.from_numpy(out0), CONF, IOU, classes=classes, max_det=300)[0]
    boxes = ops.scale_boxes(net_hw, pred[:, :4].clone(), src_hw)
    return [
        {"box_xyxy": [float(v) for v in b], "conf": float(p[4]), "cls": int(p[5])}
        for b, p in zip(boxes.tolist(), pred.tolist())
    ]


def count_and_margin(out0: np.ndarray, src_hw, net_hw):
    scores = out0[0, 4:, :].max(0)
    margin = float(np.abs(scores - CONF).min())
    return len(nms_dets(out0, src_hw, net_hw)), margin


def torch_out(model, x):
    with torch.no_grad():
        y = model(x)
    return (y[0] if isinstance(y, (list, tuple)) else y).numpy()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    img = cv2.imread(str(IMAGE))
    assert img is not None, IMAGE
    src_hw = img.shape[:2]
    summary = {}
    tmp = pathlib.Path(tempfile.mkdtemp())
    for name, yaml, nc, names, (w, h), seed, store in MODELS:
        print(f"== {name}: {yaml}, nc={nc}, input {w}x{h}, seed {seed}", flush=True)
        y = YOLO(yaml)
        if nc != 80:
            # a custom class count: the model rebuilt from the yaml with nc overridden
            from ultralytics.nn.tasks import DetectionModel

            custom = DetectionModel(yaml, nc=nc, verbose=False)
            custom.args, custom.task = y.model.args, y.model.task
            y.model = custom
        model = y.model
        model.names = {i: n for i, n in enumerate(names)}
        rgb = letterbox(img, (w, h))
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        randomise(model, seed, calib(w, h))
        head = model.model[-1]
        assert type(head).__name__ == "Detect" and head.nc == nc, head
        g = torch.Generator().manual_seed(seed + 1000)
        base = [torch.randn(b.shape, generator=g) * 0.5 for b in cls_biases(head)]

        def with_shift(shift):
            with torch.no_grad():
                for b, b0 in zip(cls_biases(head), base):
                    # rounded to fp16 as the checkpoint will store it
                    b.copy_((b0 + shift).half().float())
            return torch_out(model, x)

        # the shift: scores rise with it; bisect on the detection count, then step off a thin margin
        lo, hi = -20.0, 20.0
        for _ in range(25):
            mid = (lo + hi) / 2
            n, _ = count_and_margin(with_shift(mid), src_hw, (h, w))
            if n < 20:
                lo = mid
            else:
                hi = mid
        shift = hi
        for step in range(100):
            s = shift + 0.01 * step * (1 if step % 2 else -1)
            n, margin = count_and_margin(with_shift(s), src_hw, (h, w))
            if 10 <= n <= 40 and margin >= MARGIN:
                shift = s
                break
        else:
            sys.exit(f"{name}: no bias shift gives 10-40 detections with a margin")
        with_shift(shift)
        # every weight rounded to fp16 (what the checkpoint stores)
        model.half().float()
        print(f"   class bias shift {shift:.4f}: {n} detections, closest score {margin:.4f} from {CONF}", flush=True)

        pt = tmp / f"{name}.pt"
        y.save(str(pt))
        back = YOLO(str(pt))
        onnx_path = back.export(format="onnx", imgsz=(h, w), opset=17, simplify=False, dynamic=False, half=False)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        out0 = sess.run(["output0"], {"images": x.numpy()})[0].astype(np.float32)
        assert out0.shape == (1, 4 + nc, (w // 8) * (h // 8) + (w // 16) * (h // 16) + (w // 32) * (h // 32))
        ref = torch_out(back.model.float().eval(), x)
        print(f"   onnxruntime vs PyTorch: max |diff| {np.abs(out0 - ref).max():.2e}", flush=True)

        dets = nms_dets(out0, src_hw, (h, w))
        classes_seen = sorted({d["cls"] for d in dets}, key=lambda c: -sum(d["cls"] == c for d in dets))
        keep = sorted(classes_seen[:2]) if len(classes_seen) > 2 else sorted(classes_seen[:1])
        filtered = nms_dets(out0, src_hw, (h, w), classes=keep)
        n_margin = count_and_margin(out0, src_hw, (h, w))
        print(f"   {len(dets)} detections of classes {classes_seen}; filter {keep}: {len(filtered)}; margin {n_margin[1]:.4f}")

        save_np(
            {"letterboxed_rgb_hwc_u8": rgb, "output0": out0},
            str(OUT / f"{name}_io.safetensors"),
        )
        if store == "safetensors":
            sd = {k: v.half().contiguous() for k, v in back.model.state_dict().items() if v.is_floating_point()}
            save_torch(sd, str(OUT / f"{name}.safetensors"))
        else:
            (OUT / f"{name}.pt").write_bytes(pt.read_bytes())
        summary[name] = {
            "yaml": yaml,
            "nc": nc,
            "names": names,
            "stored_as": f"{name}.{'safetensors' if store == 'safetensors' else 'pt'}",
            "seed": seed,
            "class_bias_shift": round(shift, 4),
            "image": IMAGE.name,
            "src_wh": [int(src_hw[1]), int(src_hw[0])],
            "input_wh": [w, h],
            "conf": CONF,
            "iou": IOU,
            "dets": dets,
            "filter": {"classes": keep, "dets": filtered},
        }
    (OUT / "detections.json").write_text(json.dumps(summary, indent=1) + "\n")
    for p in sorted(OUT.iterdir()):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
