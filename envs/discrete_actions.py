"""Validation of discrete actions: integer indices into ``Discrete(n)``, single or batched.

The continuous families validate actions with ``metarl.envs.base.checked_action``; the discrete
families (``metarl.envs.bandit``, ``metarl.envs.tabular_mdp``) take integer indices instead. A
policy's sampler may hand them over as integers or as integral floats (a rollout buffer that
stores every action as float), and a batch as ``[N]`` or ``[N, 1]`` (one action per copy, the
vector environments' ``act_dim`` being 1), so both are accepted; anything else is an error
rather than a silent cast.
"""

from __future__ import annotations

import numpy as np


def checked_indices(actions: object, count: int, num_actions: int) -> np.ndarray:
    """``actions`` as an int64 array of shape ``[count]`` with entries in ``[0, num_actions)``.

    Accepts ``count`` values in any shape holding exactly that many entries (a scalar when
    ``count`` is 1), integer or integral float; a non-integral, non-finite or out-of-range
    value, or a wrong number of values, is a ``ValueError``.
    """
    array = np.asarray(actions)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"actions must be integer indices, got dtype {array.dtype}")
    if array.size != count or array.ndim > 2:
        raise ValueError(f"got actions of shape {array.shape}, expected {count} indices")
    flat = array.reshape(count)
    # integral floats are fine (float action buffers); 0.5 or NaN is a caller's bug
    integral = np.issubdtype(flat.dtype, np.integer) or (
        np.all(np.isfinite(flat)) and np.all(flat == np.round(flat))
    )
    if not integral:
        raise ValueError(f"actions must be integral, got {flat.tolist()}")
    indices = flat.astype(np.int64)
    if np.any((indices < 0) | (indices >= num_actions)):
        raise ValueError(f"actions must lie in [0, {num_actions}), got {indices.tolist()}")
    return indices
