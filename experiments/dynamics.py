"""How several cyclegan runs moved during training, on one picture.

    PYTHONPATH=src python experiments/dynamics.py "CUT, 1 h=runs/w009_hour/cut_.../cyclegan" \\
        "CUT + DiffAugment=runs/w009_diffaugment30/cut_.../cyclegan" --out dynamics.png

For each run (NAME=FOLDER, a cyclegan stage's folder, finished or `.partial`): the change of SWD
FER -> person against the untranslated images at every sample step (how far the translation has
moved towards the person; 0 is the identity), and the discriminator's loss on the person (D_A,
averaged over 100-step windows; near 0 the discriminator has won and its verdict no longer guides
the generator). The two together show a run that moved and then went back.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

WINDOW = 100


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_dynamics(folder: Path) -> dict:
    """SWD change per sample step, and the windowed mean of D_A's loss per step."""
    swd = read_rows(folder / "swd.csv")
    losses = [r for r in read_rows(folder / "losses.csv") if r.get("D_A")]
    d_loss = np.array([float(r["D_A"]) for r in losses])
    windows = len(d_loss) // WINDOW
    return {
        "swd_steps": [int(r["step"]) for r in swd],
        "swd_change": [float(r["BtoA_translated"]) / float(r["BtoA_untranslated"]) - 1 for r in swd],
        "d_steps": [int(losses[(i + 1) * WINDOW - 1]["step"]) for i in range(windows)],
        "d_loss": d_loss[: windows * WINDOW].reshape(windows, WINDOW).mean(axis=1).tolist(),
    }


def plot(runs: dict[str, dict], path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for name, run in runs.items():
        top.plot(run["swd_steps"], np.array(run["swd_change"]) * 100, marker="o", markersize=3, label=name)
        bottom.plot(run["d_steps"], run["d_loss"], label=name)
    top.axhline(0, color="gray", lw=0.8)
    top.set_ylabel("SWD FER -> person, % change\n(0: the identity)")
    top.legend(fontsize=8)
    bottom.set_ylabel(f"discriminator loss D_A\n(mean of {WINDOW} steps)")
    bottom.set_xlabel("step")
    bottom.set_yscale("log")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=FOLDER", help="a cyclegan stage folder and its label")
    parser.add_argument("--out", type=Path, default=Path("dynamics.png"))
    args = parser.parse_args(argv)
    runs = {}
    for text in args.runs:
        name, sep, folder = text.partition("=")
        folder = Path(folder)
        if not sep or not (folder / "swd.csv").is_file() or not (folder / "losses.csv").is_file():
            print(f"error: {text!r}: expected NAME=FOLDER, a cyclegan folder with swd.csv and losses.csv",
                  file=sys.stderr)
            return 2
        runs[name] = run_dynamics(folder)
    plot(runs, args.out)
    print(f"dynamics: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
