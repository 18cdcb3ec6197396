"""The check of a config's learner, outer step and estimator against the registries: the
learners declare what they combine with (``metarl.rl.learners``), so no other module lists it.
"""

from __future__ import annotations

from metarl.config import ConfigError, TrainConfig
from metarl.rl.learners import learner_problems
from metarl.rl.outer_steps import outer_step_class


def check_combination(config: TrainConfig) -> TrainConfig:
    """``config`` unchanged, or a one-line ``ConfigError`` naming what does not combine."""
    outer_step_class(config.outer)
    problems = learner_problems(config)
    if problems:
        raise ConfigError("invalid combination: " + "; ".join(problems))
    return config
