"""The fer_cnn search space's values, and what `automl_fixed` may hold each at: free of keras, so
that the config check and the docs read them without importing it (automl_space.py builds the
block from them)."""

from __future__ import annotations

# The values searched, in one place: the manifest and the docs read them from here.
SPACE: dict[str, list] = {
    "width": [16, 24, 32, 48],  # channels of the first block, doubled per block
    "depth": [2, 3, 4],  # VGG blocks (FaceNet has 4)
    "dropout": [0.0, 0.2, 0.4],  # before the classifier
    "shift": [0, 2, 4],  # random crop: a shift of up to this many pixels (FaceNet: 44-px crops of 48)
    "flip": [False, True],  # random horizontal flip
    "label_smoothing": [0.0, 0.1, 0.2],
    "learning_rate": [3e-3, 1e-3, 3e-4],  # Adam's, in the trials and at the start of the final run
}
DEFAULTS = {"width": 32, "depth": 4, "dropout": 0.2, "shift": 2, "flip": True, "label_smoothing": 0.1,
            "learning_rate": 1e-3}


# What a value of `automl_fixed` may be, per hyperparameter: (accepts?, in words).
def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FIXED_VALUES = {
    "width": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "depth": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    "dropout": (lambda v: _number(v) and 0 <= v < 1, "a number >= 0 and < 1"),
    "shift": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "flip": (lambda v: isinstance(v, bool), "true or false"),
    "label_smoothing": (lambda v: _number(v) and 0 <= v < 1, "a number >= 0 and < 1"),
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
}


def fixed_problems(fixed: dict) -> list[str]:
    """Why a `{hyperparameter: value}` of `automl_fixed` cannot hold the search there: an unknown
    name (the known ones listed) or a value of the wrong kind."""
    problems = []
    for name, value in fixed.items():
        if name not in SPACE:
            problems.append(f"automl_fixed: unknown hyperparameter {name!r}; known: {', '.join(SPACE)}")
        elif not FIXED_VALUES[name][0](value):
            problems.append(f"automl_fixed.{name}: expected {FIXED_VALUES[name][1]}, got {value!r}")
    return problems
