"""The action space a policy acts in, and the one map from it to the environment's bounds.

``action_space`` is a setting of every metarl environment:

- ``"env"`` (default): the policy acts in the environment's own units and bounds; the
  environment receives its actions unchanged (each family still clips them into its bounds).
- ``"unit"``: the policy acts in the box [-1, 1]^d, whatever the bounds [lb, ub] of the
  environment, and each action is mapped affinely onto them and clipped there:

      a_env = clip(lb + (a + 1) (ub - lb) / 2, lb, ub)

  so -1 is ``lb``, +1 is ``ub`` and 0 the middle of the box. This is what the MAML paper's RL
  code did (Finn et al. 2017, arXiv:1703.03400; github.com/cbfinn/maml_rl, the ``NormalizedEnv``
  wrapper of ``rllab/envs/normalized_env.py``, which wraps every environment of its
  experiments): the policy's Gaussian is defined on the unit box, so its standard deviation is
  measured in half-ranges of the bounds. On 2D navigation (bounds +-0.1) a standard deviation
  of 1 is a step of 0.1; on the MuJoCo families and Meta-World, whose bounds are already
  [-1, 1], the map is the identity and only the clip is new (and those environments clipped
  anyway).

``unit_to_env`` is the map itself; ``ActionMap`` applies it inside an environment's ``step``
(and gives the action space the environment exposes), so every consumer of an environment --
the trainer's vector environment, a single gymnasium environment, Ray workers, evaluation,
videos, the baselines -- sees the same actions. Rewards and observations are left alone, as in
the paper's code.
"""

from __future__ import annotations

import gymnasium
import numpy as np

ACTION_SPACES = ("env", "unit")


def check_action_space(action_space: str) -> None:
    if action_space not in ACTION_SPACES:
        known = ", ".join(repr(name) for name in ACTION_SPACES)
        raise ValueError(f"action_space must be one of {known}, got {action_space!r}")


def unit_to_env(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actions in [-1, 1]^d (any leading dimensions) mapped onto ``[low, high]`` and clipped
    there: ``clip(low + (action + 1) (high - low) / 2, low, high)``, as float64."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    mapped = low + (np.asarray(action, dtype=np.float64) + 1.0) * 0.5 * (high - low)
    clipped: np.ndarray = np.clip(mapped, low, high)
    return clipped


def env_to_unit(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The inverse of ``unit_to_env`` inside the bounds: ``2 (action - low) / (high - low) - 1``
    (no clipping; for tests and for reading environment actions as policy actions)."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    unit: np.ndarray = 2.0 * (np.asarray(action, dtype=np.float64) - low) / (high - low) - 1.0
    return unit


class ActionMap:
    """What an environment with bounds ``bounds`` exposes and receives under ``action_space``.

    ``space`` is the action space to expose (``bounds`` itself for ``"env"``, the unit box of the
    same shape and dtype for ``"unit"``); calling the map turns a policy action into the
    environment's (the identity for ``"env"``). ``bounds`` must be finite.
    """

    def __init__(self, bounds: gymnasium.spaces.Box, action_space: str = "env") -> None:
        check_action_space(action_space)
        if not (np.all(np.isfinite(bounds.low)) and np.all(np.isfinite(bounds.high))):
            raise ValueError(f"action bounds must be finite, got {bounds}")
        self.name = action_space
        self.bounds = bounds
        self.low = bounds.low.astype(np.float64)
        self.high = bounds.high.astype(np.float64)
        if action_space == "unit":
            self.space = gymnasium.spaces.Box(-1.0, 1.0, bounds.shape, bounds.dtype)
        else:
            self.space = bounds

    def __call__(self, action: np.ndarray) -> np.ndarray:
        """``action`` (a policy action, or a batch of them) as the environment's action."""
        if self.name == "env":
            return action
        return unit_to_env(action, self.low, self.high)
