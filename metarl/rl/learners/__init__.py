"""The RL meta-learners, registered by name: the ``learner`` field of a config picks one.

To add a learner, write a module with a ``Learner`` subclass (``metarl.rl.learners.base``) and
add it to ``LEARNERS``; the config check, the sampler, the trainer, evaluation and the docs'
config reference all read this registry.
"""

from __future__ import annotations

import difflib

from metarl.config import ConfigError, TrainConfig
from metarl.core.distributions import Policy
from metarl.rl.learners.base import Learner
from metarl.rl.learners.imaml import Imaml
from metarl.rl.learners.maml import FirstOrderMaml, Maml
from metarl.rl.learners.pretrained import Pretrained
from metarl.rl.learners.reptile import Reptile
from metarl.rl.objective import MetaObjective

LEARNERS: dict[str, type[Learner]] = {
    cls.name: cls for cls in (Maml, FirstOrderMaml, Reptile, Imaml, Pretrained)
}


def learner_class(name: str) -> type[Learner]:
    """The registered learner ``name``; a one-line error with the close names otherwise."""
    if name not in LEARNERS:
        close = difflib.get_close_matches(name, LEARNERS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        known = ", ".join(repr(known) for known in LEARNERS)
        raise ConfigError(f"learner must be one of {known}, got {name!r}{hint}")
    return LEARNERS[name]


def build_learner(config: TrainConfig, policy: Policy) -> Learner:
    """The config's learner on ``policy``, with the config's estimator as its inner loss."""
    return learner_class(config.learner)(config, MetaObjective.for_config(config, policy))


def learner_problems(config: TrainConfig) -> list[str]:
    """What is wrong with the config's (learner, outer, estimator, first_order) combination,
    as the learner's declarations say; empty when it means something."""
    cls = learner_class(config.learner)
    problems = []
    if config.outer not in cls.outer_steps:
        problems.append(f"learner {cls.name} takes outer {_either(cls.outer_steps)}, "
                        f"not {config.outer}")
    if config.first_order and not cls.takes_first_order:
        problems.append(f"first_order applies to maml only, not learner {cls.name}")
    if config.estimator != "maml" and not cls.second_order(config):
        problems.append(f"estimator {config.estimator} shapes second-order terms, which "
                        f"learner {cls.name}{' with first_order' * config.first_order} "
                        "does not use")
    return problems


def _either(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


__all__ = ["LEARNERS", "Learner", "build_learner", "learner_class", "learner_problems"]
