#!/usr/bin/env python3
"""What accounts cost a request, measured against the real binary on loopback.

Starts `target/debug/haven` twice with no cameras: an open server (no account, no token) and one with
an account and an API token (made with `haven user add` / `haven token create`). Then, interleaved
round by round so that the shared machine's load falls on all of them alike, times:

  open      GET /api/engine on the open server (the gate finds nobody needs to sign in)
  session   GET /api/engine with the session cookie (one SQLite lookup of the SHA-256 of the id)
  token     GET /api/engine with the bearer token (one lookup of its SHA-256)
  sign-in   POST /api/session (argon2id verify of the password, then a session row)

and prints each one's median and p90 in ms and the median's ratio to `open`.

    cargo build -p haven && python3 scripts/bench_auth.py [ROUNDS]
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug", "haven")
PASSWORD = "correct horse battery"


def settings(dir_):
    text = open(os.path.join(ROOT, "settings", "default.toml")).read()
    text = text[: text.index("[[cameras]]")]
    text = re.sub(r'^data_dir = .*$', f'data_dir = "{dir_}/events"', text, flags=re.M)
    path = os.path.join(dir_, "s.toml")
    open(path, "w").write(text)
    return path


def start(path):
    env = dict(os.environ, HAVEN__SERVER__BIND="127.0.0.1:0", HAVEN__MODEL__ENABLED="false", HAVEN__MODELS__FALL__ENABLED="false", RUST_LOG="warn,haven=info")
    child = subprocess.Popen([BIN, "--settings", path], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in child.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return child, int(m.group(1))
    raise SystemExit("the server did not start")


def timed(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    t = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    data = res.read()
    ms = (time.perf_counter() - t) * 1000
    conn.close()
    return ms, res, data


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        open_path, acc_path = settings(a), settings(b)
        subprocess.run([BIN, "--settings", acc_path, "user", "add", "ann", "--role", "admin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        token = subprocess.run([BIN, "--settings", acc_path, "token", "create", "bench", "--role", "viewer"], text=True, check=True, capture_output=True).stdout.strip()
        (open_srv, open_port), (acc_srv, acc_port) = start(open_path), start(acc_path)
        try:
            body = json.dumps({"name": "ann", "password": PASSWORD})
            _, res, _ = timed(acc_port, "POST", "/api/session", {"Content-Type": "application/json"}, body)
            cookie = res.getheader("Set-Cookie").split(";")[0]
            runs = {"open": [], "session": [], "token": [], "sign-in": []}
            asks = {
                "open": lambda: timed(open_port, "GET", "/api/engine"),
                "session": lambda: timed(acc_port, "GET", "/api/engine", {"Cookie": cookie}),
                "token": lambda: timed(acc_port, "GET", "/api/engine", {"Authorization": f"Bearer {token}"}),
                "sign-in": lambda: timed(acc_port, "POST", "/api/session", {"Content-Type": "application/json"}, body),
            }
            names = list(asks)
            for r in range(rounds):
                # Each round in another order: none always follows the CPU-heavy sign-in.
                for name in names[r % 4:] + names[: r % 4]:
                    ms, res, _ = asks[name]()
                    assert res.status == 200, (name, res.status)
                    runs[name].append(ms)
        finally:
            open_srv.terminate()
            acc_srv.terminate()
    base = statistics.median(runs["open"])
    print(f"{rounds} rounds, interleaved; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'request':<10}{'median ms':>11}{'p90 ms':>9}{'× open':>9}")
    for name, xs in runs.items():
        xs = sorted(xs)
        med, p90 = statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]
        print(f"{name:<10}{med:>11.2f}{p90:>9.2f}{med / base:>9.2f}")


if __name__ == "__main__":
    main()
