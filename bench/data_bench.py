"""How fast the data layer loads FER2013 (all 35,887 images of ../shared/data/fer2013).

Usage: python bench/data_bench.py [PATH] [--repeat N]
Last line: `load_s=<best seconds> images=<count>`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fertransfer.data import load_dataset
from fertransfer.pipelines.runner import machine_description

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


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
    print(f"machine: {machine_description()}")
    print("runs (s): " + ", ".join(f"{t:.2f}" for t in times))
    print(f"load_s={min(times):.2f} images={count}")


if __name__ == "__main__":
    main()
