"""Where the AutoKeras fer_cnn search spends the time that is not training.

    PYTHONPATH=src python bench/automl_overhead.py [--trials 4] [--images 512] [--val 512] [--threads 1]

On FER2013 the search's work around the trials' fits took 770 of 1,448 s (64 s a trial,
docs/results.md). This runs the search of classify/automl.py (Hyperband over the fer_cnn space,
1-epoch trials, no final run) on random 48x48 images under cProfile and prints the overhead as the
stage measures it (search seconds minus the trials' fit seconds) and the functions that take the
most cumulative time outside `fit`, so a fix can aim at the right place.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--val", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import torch

    torch.set_num_threads(args.threads)
    from fertransfer.classify.automl import AutoKerasConfig, train_autokeras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (args.images + args.val, 48, 48, 1), dtype=np.uint8)
    labels = rng.integers(0, 7, args.images + args.val)
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    config = AutoKerasConfig(max_trials=args.trials, epochs=1, space="fer_cnn", trial_images=0, final_epochs=0)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        profile.enable()
        result = train_autokeras(images[: args.images], labels[: args.images], images[args.images:],
                                 labels[args.images:], classes, config, Path(work))
        profile.disable()
        wall = time.perf_counter() - t0
    trials = result.info["trials"]
    fits = sum(t["seconds"] for t in trials)
    print(f"{len(trials)} trials of 1 epoch on {args.images} images (val {args.val}), {torch.get_num_threads()} "
          f"thread(s): search {result.info['search_seconds']:.1f} s, fits {fits:.1f} s, overhead "
          f"{result.info['search_overhead_seconds']:.1f} s ({result.info['search_overhead_seconds'] / len(trials):.1f} s "
          f"a trial); whole call {wall:.1f} s")
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
