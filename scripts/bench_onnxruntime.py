#!/usr/bin/env python3
"""onnxruntime side-by-side baseline for the pose engine benchmark.

    pip install onnxruntime numpy
    python3 scripts/bench_onnxruntime.py [MODEL.onnx] [RUNS] [THREADS]

MODEL defaults to ../shared/golden/yolo11n-pose/yolo11n-pose.onnx (input `images` [1,3,640,640], static).
Prints the median ms per inference (network only, input already NCHW float32) with intra-op THREADS threads
(default 2), sequential execution, all graph optimisations on.
"""
import sys, time
import numpy as np
import onnxruntime as ort

model = sys.argv[1] if len(sys.argv) > 1 else "../shared/golden/yolo11n-pose/yolo11n-pose.onnx"
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2

so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 640 for d in inp.shape]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
for _ in range(3):
    sess.run(None, {inp.name: x})
t = []
c0 = time.process_time()
for _ in range(runs):
    t0 = time.perf_counter()
    sess.run(None, {inp.name: x})
    t.append((time.perf_counter() - t0) * 1e3)
cpu = (time.process_time() - c0) * 1e3 / runs
t.sort()
print(f"onnxruntime {ort.__version__} {model} {shape[3]}x{shape[2]} threads {threads}: "
      f"median {t[len(t)//2]:.1f} ms (min {t[0]:.1f}, max {t[-1]:.1f}, cpu {cpu:.1f} ms/frame)")
