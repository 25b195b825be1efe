"""Where the heap goes at its peak, from a heaptrack recording of the server, in the groups of
docs/performance.md ("Memory"): python3 scripts/heap_breakdown.py target/heaptrack-PID.zst
(or a stacks file heaptrack_print -F wrote with --flamegraph-cost-type peak)"""
import collections
import re
import subprocess
import sys
import tempfile

# First match wins (a stack is counted once). Names as they appear in heaptrack's frames.
GROUPS = [
    ("weights: Winograd F(4x4)", r"new4 \(winograd"),
    ("weights: Winograd F(2x2)", r"new \(winograd\.rs\)"),
    ("weights: GEMM panels", r"pack_a"),
    ("weights: plain (folded at load)", r"load \(conv\.rs\)|load_plain|merge_convs"),
    ("pose engine: feature maps and scratch (pool)", r"\(planes\.rs\)|\(conv\.rs\)|\(winograd\.rs\)|\(pool\.rs\)|\(blocks\.rs\)|\(head\.rs\)|driver\.rs|haven_pose|from_letterboxed"),
    ("clip ring (JPEG copies)", r"recorder|push_frame"),
    ("OpenCV frames (Mat)", r"cv::Mat|cv::resize|cv::copyMakeBorder|cv::imencode|cv::_OutputArray"),
    ("FFmpeg decoders", r"VideoCapture|av_malloc|avcodec|avformat"),
    ("HTTP, WebSockets, packets", r"actix|packet\.rs|ws\.rs|bytestring|awc"),
    ("start-up (libraries' initialisers)", r"_dl_init|call_init"),
    ("thread start", r"start_thread"),
]

def stacks(path):
    """heaptrack_print's stacks (callers first), each with its bytes at the heap's peak."""
    if path.endswith(".txt"):  # already written by heaptrack_print -F
        return open(path).read().splitlines()
    with tempfile.NamedTemporaryFile(suffix=".txt") as tmp:
        subprocess.run(["heaptrack_print", "-f", path, "-p", "0", "-a", "0", "-T", "0", "-l", "0",
                        "--flamegraph-cost-type", "peak", "-F", tmp.name],
                       check=True, stdout=subprocess.DEVNULL)
        return open(tmp.name).read().splitlines()


def main(path):
    sums = collections.Counter()
    for line in stacks(path):
        stack, _, n = line.rpartition(" ")
        for name, pat in GROUPS:
            if re.search(pat, stack):
                sums[name] += int(n)
                break
        else:
            sums["other"] += int(n)
    total = sum(sums.values())
    print("| at the heap's peak | MiB |\n|---|---|")
    for name, n in sums.most_common():
        print(f"| {name} | {n / 2**20:.1f} |")
    print(f"| total | {total / 2**20:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
