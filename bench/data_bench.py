"""How fast the data layer loads FER2013 (all 35,887 images of ../shared/data/fer2013).

Usage: python bench/data_bench.py [PATH] [--repeat N]
Last line: `load_s=<best seconds> images=<count>`.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from fertransfer.data import load_dataset

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        data = load_dataset(args.path)
        times.append(time.perf_counter() - start)
    count = sum(len(s) for s in data.splits.values())
    print(f"machine: {cpu_name()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print("runs (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(f"load_s={min(times):.2f} images={count}")


if __name__ == "__main__":
    main()
