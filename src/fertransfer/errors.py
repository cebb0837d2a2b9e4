"""Errors every layer raises.

They live on the ground floor, beside `fertransfer.data`, so that a stage's core can report
a problem without importing the runner (`fertransfer.pipelines`), which imports the stages.
"""

from __future__ import annotations


class StageError(RuntimeError):
    """A stage cannot do its work; the message names the input at fault."""


__all__ = ["StageError"]
