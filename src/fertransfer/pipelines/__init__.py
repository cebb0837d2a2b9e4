"""Config, the stage runner and the CLI: how the stages are chained and driven."""

from .config import Config, ConfigError, default_config_text, load_config
from .options import RunOptions, option
from .registry import STAGE_ORDER, get_stage
from .runner import run_pipeline, run_stage, stage_status
from .stage import Consumes, Stage, StageContext, StageError

__all__ = [
    "STAGE_ORDER",
    "Config",
    "Consumes",
    "ConfigError",
    "RunOptions",
    "Stage",
    "StageContext",
    "StageError",
    "default_config_text",
    "get_stage",
    "load_config",
    "option",
    "run_pipeline",
    "run_stage",
    "stage_status",
]
