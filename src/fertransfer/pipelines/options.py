"""The [run] and [data] sections' options; `option` and `field_default` are re-exported from the ground floor.

Options are declared with `fertransfer.options.option`; it is importable from here too so that
older imports keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.options import field_default, option, out_of_range, range_problem, range_text


@dataclass
class RunOptions:
    """The [run] section: settings every stage shares."""

    dir: str = option("runs/default", "Folder the stages write into, one subfolder per stage.", kind="path")
    seed: int = option(0, "Seed for every random choice (splits, initialisation, sampling).", ge=0)
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N.")


@dataclass
class DataOptions:
    """The [data] section: what several stages share, declared once. A stage names the keys it
    reads (`Stage.data_keys`); they are fingerprinted with its own section."""

    fer: str = option("", "The labelled FER dataset (Kaggle CSV, split or class folders), e.g. "
                      "../shared/data/fer2013: cyclegan's domain B, what augment translates, classify's real set "
                      "and its val/test splits (FER2013: val = PublicTest, test = PrivateTest).",
                      kind="path", required=True)
    labels: str = option("fer", "Labels of `fer`: its own (folders/CSV), or FER+'s majority vote read from `ferplus` "
                         "(images FER+ calls unknown, not a face, or tied are left out; eight classes, with contempt).",
                         choices=("fer", "ferplus"))
    ferplus: str = option("", "FER+ votes file (fer2013new.csv) for labels = \"ferplus\"; `fer`'s files must carry "
                          "their FER2013 row (Training_00042.png) or be the original Kaggle CSV.", kind="path")
    faces: str = option("", "Folder of the person's face crops (cyclegan's domain A, the reference row of the "
                        "translation galleries); empty: the extract stage's faces/.", kind="path")
    classes: list[str] = option([], "classify: class names in label order (empty: FER2013's seven; FER+'s eight, "
                                "with contempt, when labels = \"ferplus\").")

    def input_paths(self, keys: tuple[str, ...]) -> list[str]:
        """The paths among `keys` that a stage reading them depends on (ferplus only with its labels)."""
        paths = [getattr(self, key) for key in ("fer", "faces") if key in keys]
        if "ferplus" in keys and self.labels == "ferplus":
            paths.append(self.ferplus)
        return [p for p in paths if p]


__all__ = ["DataOptions", "RunOptions", "field_default", "option", "out_of_range", "range_problem", "range_text"]
