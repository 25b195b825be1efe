#!/usr/bin/env python3
"""Per-layer times of onnxruntime on yolo11n-pose, to set beside HAVEN_POSE_PROFILE=1.

    python3 scripts/profile_onnxruntime.py [THREADS] [RUNS]

Runs the ONNX export (../shared/golden/yolo11n-pose/yolo11n-pose.onnx) 3 + RUNS times with onnxruntime's
profiler on, drops the 3 warm-up runs, and prints per Ultralytics module (`/model.N/...` node names; -1
for nodes outside any module: layout reorders and the like) the sum of its nodes' median times in ms,
then the same per operator type.
"""
import collections, json, re, sys, tempfile
import numpy as np
import onnxruntime as ort

model = "../shared/golden/yolo11n-pose/yolo11n-pose.onnx"
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
warm = 3

so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.enable_profiling = True
so.profile_file_prefix = tempfile.mkdtemp() + "/ort"
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
for _ in range(warm + runs):
    sess.run(None, {"images": x})
events = json.load(open(sess.end_profiling()))
nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
times, ops = collections.defaultdict(list), {}
for e in nodes:
    times[e["name"]].append(e["dur"] / 1000.0)
    ops[e["name"]] = e["args"].get("op_name", "?")
by_module, by_op = collections.defaultdict(float), collections.defaultdict(float)
for name, ts in times.items():
    ts = sorted(ts[warm:])
    med = ts[len(ts) // 2]
    m = re.match(r"/model\.(\d+)/", name)
    by_module[int(m.group(1)) if m else -1] += med
    by_op[ops[name]] += med
print(f"onnxruntime {ort.__version__}, {threads} thread(s), {runs} runs: {sum(by_module.values()):.1f} ms per frame (sum of node medians)")
print(" ".join(f"{k}:{v:.2f}" for k, v in sorted(by_module.items())))
print(" ".join(f"{k}:{v:.2f}" for k, v in sorted(by_op.items(), key=lambda t: -t[1])))
