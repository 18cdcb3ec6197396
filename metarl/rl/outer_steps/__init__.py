"""The outer (meta) steps, registered by name: the ``outer`` field of a config picks one.

To add one, write a module with an ``OuterStep`` subclass (``metarl.rl.outer_steps.base``) and
add it to ``OUTER_STEPS``; a learner lists the outer steps it works with in its
``outer_steps``.
"""

from __future__ import annotations

from metarl.config import ConfigError
from metarl.rl.outer_steps.base import OuterStep
from metarl.rl.outer_steps.gradient import AdamOuterStep, SgdOuterStep
from metarl.rl.outer_steps.promp import PrompOuterStep
from metarl.rl.outer_steps.trpo import TrpoOuterStep

OUTER_STEPS: dict[str, type[OuterStep]] = {
    cls.name: cls for cls in (TrpoOuterStep, AdamOuterStep, SgdOuterStep, PrompOuterStep)
}


def outer_step_class(name: str) -> type[OuterStep]:
    if name not in OUTER_STEPS:
        known = ", ".join(repr(known) for known in OUTER_STEPS)
        raise ConfigError(f"outer must be one of {known}, got {name!r}")
    return OUTER_STEPS[name]


__all__ = ["OUTER_STEPS", "OuterStep", "outer_step_class"]
