"""OpenMP's wait policy on a shared CPU: the default against OMP_WAIT_POLICY=PASSIVE set before start.

Training views/s of our loop (bench/throughput.py, width 16, batch 128, 1,024
images) in fresh processes, fp32 and bf16, with 0, 1, 2 and 4 busy neighbours
(processes spinning on one core each, started by this script and stopped after
each run). The policy only takes effect when it is in the environment before
the process starts: OpenMP reads it once, when torch loads its runtime.
Rounds alternate the two policies, so that a drift of the machine's load hits
both alike; the ratio PASSIVE / default is printed per setting.

    .venv/bin/python bench/omp_policy.py --repeats 2
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True:\n    pass\n"


def loop_rate(precision: str, policy: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), "--width", "16", "--batch-size",
                          "128", "--n", "1024", "--epochs", "1", "--precisions", precision, "--device", "cpu"],
                         capture_output=True, text=True, env=env, check=True).stdout
    return float(re.search(r"our loop\s*:\s*([\d.]+)", out).group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--neighbours", default="0,1,2,4")
    p.add_argument("--precisions", default="fp32,bf16")
    args = p.parse_args()
    from medcne.device import machine_name

    print(f"machine: {machine_name('cpu')}, load average {os.getloadavg()[0]:.1f} at start")
    print("neighbours precision   default views/s   PASSIVE views/s   PASSIVE/default")
    for n in map(int, args.neighbours.split(",")):
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
        try:
            for precision in args.precisions.split(","):
                rates: dict[str, list[float]] = {"default": [], "PASSIVE": []}
                for _ in range(args.repeats):
                    rates["default"].append(loop_rate(precision, None))
                    rates["PASSIVE"].append(loop_rate(precision, "PASSIVE"))
                d, q = statistics.median(rates["default"]), statistics.median(rates["PASSIVE"])
                print(f"{n:10d} {precision:9s} {d:17.0f} {q:17.0f} {q / d:17.2f}   "
                      f"(runs {rates['default']} / {rates['PASSIVE']})", flush=True)
        finally:
            for s in spinners:
                s.kill()
                s.wait()


if __name__ == "__main__":
    main()
