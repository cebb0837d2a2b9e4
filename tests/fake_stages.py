"""Small stages for testing the runner without any real model.

`first` copies its input file's text, `second` reads first's output; either can be told to
fail midway, like a stage interrupted by Ctrl-C or a crash. `passthrough(name)` stands in for a
stage a test does not exercise, so that the fakes fill every place in the stage order
(`PASSTHROUGH_MODULES` names the modules that hold one per stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.pipelines import Consumes, Stage, StageContext, StageError, option


@dataclass
class FirstOptions:
    source: str = option("input.txt", "A text file to copy.", kind="path")
    repeat: int = option(1, "How often to repeat the text.")
    fail_midway: bool = option(False, "Raise after writing half the output.")
    threads: int = option(0, "torch threads while it runs (0: leave torch's count alone).", execution=True)


def run_first(ctx: StageContext) -> dict:
    if ctx.options.threads:
        import torch

        torch.set_num_threads(ctx.options.threads)  # process-wide: the runner must restore it
    text = ctx.path(ctx.options.source).read_text() * ctx.options.repeat
    (ctx.out_dir / "copy.txt").write_text(text)
    if ctx.options.fail_midway:
        raise StageError("failed midway on purpose")
    (ctx.out_dir / "done.txt").write_text("ok")
    return {"characters": len(text), "resumed": ctx.resuming}


@dataclass
class SecondOptions:
    suffix: str = option("!", "Appended to the first stage's text.")
    fail_midway: bool = option(False, "Raise after writing half the output.")


def run_second(ctx: StageContext) -> dict:
    marker = ctx.out_dir / "attempts.txt"
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    text = ctx.artifact("extract.copy").read_text() + ctx.options.suffix
    (ctx.out_dir / "result.txt").write_text(text)
    if ctx.options.fail_midway:
        raise StageError("failed midway on purpose")
    import torch

    return {"characters": len(text), "attempts": attempts, "resumed": ctx.resuming, "threads": torch.get_num_threads()}


FIRST = Stage(
    name="extract",
    options=FirstOptions,
    run=run_first,
    description="test stage one",
    inputs=lambda o: [o.source],
    produces={"copy": "copy.txt"},
    demo={"source": "data/lecture.mp4"},
)
SECOND = Stage(
    name="cyclegan",
    options=SecondOptions,
    run=run_second,
    description="test stage two (resumable)",
    consumes=lambda o, data: [Consumes("extract.copy")],
    resumable=True,
    resume_point=lambda work: f"attempt {int((work / 'attempts.txt').read_text()) + 1}"
    if (work / "attempts.txt").exists() else None,
)


@dataclass
class PassOptions:
    note: str = option("ran", "Written to the stage's one output file.")


def run_passthrough(ctx: StageContext) -> dict:
    (ctx.out_dir / "ran.txt").write_text(ctx.options.note)
    return {"note": ctx.options.note}


def passthrough(name: str) -> Stage:
    """A stage that reads nothing and writes `ran.txt`: fills `name`'s place in the stage order."""
    return Stage(name=name, options=PassOptions, run=run_passthrough, description=f"pass-through test stage {name}")


# The module of the pass-through stage for each stage name (tests/fake_pass_<name>.py).
PASSTHROUGH_MODULES = {name: f"fake_pass_{name}" for name in ("cyclegan", "augment", "classify")}
