"""Seconds per training image of the AutoKeras fer_cnn space's models (Keras 3, torch backend).

    PYTHONPATH=src python bench/automl_cost.py [--images 1024] [--threads 1] [--bf16] [--batchnorm keras,fused]

Builds the space's default model (width 32, depth 4, shift 2, flip) and a few others through
the space's own block and head, fits each on random 48x48 images for one epoch after a warm-up
epoch, and prints images/s by the wall clock and per CPU-second per thread (the fair measure on a
shared machine), plus the implied seconds per image and epoch with a validation pass of a
quarter of the training images (how classify/automl.py's SECONDS_PER_TRIAL_IMAGE was set).
`--batchnorm keras,fused` times each model with Keras's BatchNormalization and with the space's
FusedBatchNorm (torch's kernel), in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="Keras's mixed_bfloat16 policy")
    parser.add_argument("--batchnorm", default="fused", help="keras, fused or both (keras,fused)")
    parser.add_argument("--models", default="32x4,16x3,48x4", help="width x depth, comma-separated")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras_tuner
    import torch

    torch.set_num_threads(args.threads)
    from fertransfer.classify import automl_space as space

    keras = space.keras
    if args.bf16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.images, 48, 48, 1)).astype(np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, args.images)]
    print(f"keras {keras.__version__} ({keras.backend.backend()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), policy {keras.mixed_precision.global_policy().name}")
    norms = {"keras": keras.layers.BatchNormalization, "fused": space.FusedBatchNorm}
    models = [tuple(int(v) for v in m.split("x")) for m in args.models.split(",")]
    for (width, depth), norm in ((m, n) for m in models for n in args.batchnorm.split(",")):
        space.FerCnnBlock.norm = norms[norm]
        hp = keras_tuner.HyperParameters()
        for name, value in {**space.DEFAULTS, "width": width, "depth": depth}.items():
            hp.Fixed(f"fer_cnn/{name}" if name not in ("label_smoothing", "learning_rate") else
                     ("head/label_smoothing" if name == "label_smoothing" else name), value)
        hp.Fixed("optimizer", "adam")
        inputs = keras.Input((48, 48, 1))
        features = space.FerCnnBlock(name="fer_cnn").build(hp, inputs)
        outputs = keras.layers.Softmax()(keras.layers.Dense(7)(features))
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[: args.batch * 2], y[: args.batch * 2], batch_size=args.batch, epochs=1, verbose=0)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        model.predict(x, batch_size=256, verbose=0)
        infer = (time.perf_counter() - t1) / len(x)
        per_cpu = len(x) / (cpu / torch.get_num_threads())
        cost = 1 / per_cpu + 0.25 * infer
        print(f"width {width} depth {depth}, {norm} batch norm: {len(x) / wall:6.0f} images/s wall, {per_cpu:6.0f} per CPU-second/thread; "
              f"about {cost * 1000:.1f} ms per training image and epoch with validation")


if __name__ == "__main__":
    main()
