"""Expression class sets and the names people use for them.

FER2013's integer labels follow one fixed order; every dataset we read is mapped onto
a class list so that label 3 means the same thing everywhere in a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Spellings found in public FER-style folders and papers, mapped to the canonical name.
FER_ALIASES: dict[str, str] = {
    "anger": "angry",
    "mad": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "smile": "happy",
    "sadness": "sad",
    "unhappy": "sad",
    "surprised": "surprise",
    "suprise": "surprise",
    "calm": "neutral",
    "neutrality": "neutral",
}


def normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class ClassSet:
    """An ordered list of class names plus the aliases that map onto them."""

    def __init__(self, names: Sequence[str], aliases: dict[str, str] | None = None):
        self.names = tuple(normalise_name(n) for n in names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate class names in {list(names)}")
        self.aliases = {normalise_name(k): normalise_name(v) for k, v in (aliases or {}).items()}

    def index(self, name: str) -> int | None:
        """Label of a folder or CSV name, or None when it is not one of ours."""
        key = normalise_name(name)
        key = self.aliases.get(key, key)
        try:
            return self.names.index(key)
        except ValueError:
            return None

    def index_or_raise(self, name: str, where: str) -> int:
        label = self.index(name)
        if label is None:
            raise ValueError(
                f"{where}: unknown class '{name}'; known classes: {', '.join(self.names)}"
            )
        return label

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassSet) and self.names == other.names

    def __repr__(self) -> str:
        return f"ClassSet({list(self.names)})"


FER = ClassSet(FER_CLASSES, FER_ALIASES)

# FER+ (Barsoum et al. 2016) relabels FER2013 by crowd votes and adds contempt; FER's order first,
# so labels 0..6 mean the same in both sets.
FERPLUS_CLASSES: tuple[str, ...] = (*FER_CLASSES, "contempt")
FERPLUS = ClassSet(FERPLUS_CLASSES, {**FER_ALIASES, "contemptuous": "contempt"})


def class_set(names: Iterable[str] | None = None, default: ClassSet = FER) -> ClassSet:
    """`default` (FER's seven), or a custom set from config (keeping FER aliases that still apply)."""
    if not names:
        return default
    names = list(names)
    known = {normalise_name(n) for n in names}
    aliases = {k: v for k, v in FER_ALIASES.items() if v in known}
    return ClassSet(names, aliases)
