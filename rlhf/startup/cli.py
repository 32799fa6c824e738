"""`python -m rlhf.recipes.<recipe>`: the config from the command line, then the run; bad input
ends the run with one clear line and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, Optional


def run_recipe(recipe: str, defaults, run: Callable[[object], dict], argv: Optional[list[str]] = None) -> dict:
    """`defaults` is an instance of the recipe's config tree; `run(cfg)` runs the recipe."""
    from rlhf.checkpoint import CheckpointError
    from rlhf.config import parse_cli
    from rlhf.data.files import DataError
    from rlhf.models import ModelPathError
    from rlhf.reward import RewardSpecError
    from rlhf.startup.session import RunDirError

    from rlhf.loops.guards import TrainingDiverged

    cfg = parse_cli(type(defaults), defaults, f"rlhf.recipes.{recipe}", argv)
    try:
        return run(cfg)
    except (DataError, ModelPathError, RewardSpecError, CheckpointError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except TrainingDiverged as e:  # not bad input: the run started and had to stop
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
