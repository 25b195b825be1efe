"""Per-convolution times of two environments of one bench binary, interleaved (order alternating per
round): the minimum per convolution over the rounds and frames, summed per kind, and the ratio B / A.
  python3 scripts/pose_conv_ab.py ROUNDS FRAMES 'VAR=a ...' 'VAR=b ...'     (1 thread, 640x640)
e.g. 'HAVEN_ZMM_KERNEL=0' 'HAVEN_ZMM_KERNEL=1'. Needs: cargo build -p haven-pose --example bench
(BENCH=path measures another binary)."""
import subprocess, sys, os, re, collections
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
bench = os.environ.get("BENCH", "./target/debug/examples/bench")
rounds, frames = int(sys.argv[1]), sys.argv[2]
envs = [dict(kv.split("=", 1) for kv in arg.split()) for arg in sys.argv[3:5]]
best = {0: {}, 1: {}}
for r in range(rounds):
    for z in ([0, 1] if r % 2 == 0 else [1, 0]):
        env = dict(os.environ, HAVEN_CONV_PROFILE="1", RAYON_NUM_THREADS="1", BENCH_SIZES="640x640", **envs[z])
        out = subprocess.run([bench, "weights/yolo11n-pose.safetensors", frames], env=env, capture_output=True, text=True).stderr
        lines = [l for l in out.splitlines() if l.startswith("conv")]
        per = len(lines) // (int(frames) + 2)
        for i, l in enumerate(lines):
            key = (i % per, l.split(":")[0])
            if "winograd" in l:
                ms = float(re.search(r"winograd F\(\d,3\) ([0-9.]+) ms", l).group(1)); kind = "winograd"
            else:
                m = re.search(r"planes ([0-9.]+) ms, prep\+gemm ([0-9.]+) ms", l)
                ms = float(m.group(1)) + float(m.group(2))
                d = l.split()[1:5]
                kind = "1x1" if d[1] == "k1" else ("3x3 s2" if d[2] == "s2" else "3x3 s1 direct")
            b = best[z].setdefault(key, [kind, 1e9]); b[1] = min(b[1], ms)
sums = {0: collections.Counter(), 1: collections.Counter()}
for z in (0, 1):
    for key, (kind, ms) in best[z].items():
        sums[z][kind] += ms; sums[z]["all"] += ms
for k in ["1x1", "3x3 s2", "3x3 s1 direct", "winograd", "all"]:
    print(f"{k}: A {sums[0][k]:.2f} ms, B {sums[1][k]:.2f} ms, B / A {sums[1][k]/max(sums[0][k],1e-9):.3f}")
print("most slowed by B (ms):")
worst = sorted(best[1], key=lambda key: best[1][key][1] - best[0][key][1], reverse=True)[:8]
for key in worst:
    print(f"  #{key[0]} {key[1]}: {best[0][key][1]:.3f} -> {best[1][key][1]:.3f}")
print("load:", open("/proc/loadavg").read().split()[:3])
