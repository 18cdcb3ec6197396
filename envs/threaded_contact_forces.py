"""The Ant's contact forces for a whole batch of states, computed on several threads.

``mujoco.rollout`` returns states and sensor readings but not ``cfrc_ext``, so the batched
simulator recomputes the contact forces at every new state with one forward pass each
(``locomotion.contact_forces``). On one thread that pass was a third of AntVel's step time.
MuJoCo's Python bindings release the GIL inside ``mj_forward`` and ``mj_rnePostConstraint``, so
Python threads, each with its own ``MjData``, run the passes in parallel; only the few array
copies around each call hold the GIL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np

from metarl.envs.locomotion import contact_forces


class ThreadedContactForces:
    """``cfrc_ext`` of many (qpos, qvel, ctrl) states, split into ``nthread`` contiguous chunks.

    Each state is computed exactly as ``contact_forces`` computes it (cold solver start), so the
    result does not depend on the thread count.
    """

    def __init__(self, model: mujoco.MjModel, nthread: int) -> None:
        if nthread < 1:
            raise ValueError(f"nthread must be at least 1, got {nthread}")
        self.model = model
        self._scratch = [mujoco.MjData(model) for _ in range(nthread)]
        self._pool = ThreadPoolExecutor(nthread) if nthread > 1 else None

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
        """``[n, nbody, 6]`` contact forces of the ``n`` states given row by row."""
        forces = np.empty((len(qpos), self.model.nbody, 6))

        def fill(scratch: mujoco.MjData, rows: np.ndarray) -> None:
            for i in rows:
                forces[i] = contact_forces(self.model, scratch, qpos[i], qvel[i], ctrl[i])

        chunks = np.array_split(np.arange(len(qpos)), len(self._scratch))
        if self._pool is None:  # one thread, or closed
            for scratch, rows in zip(self._scratch, chunks, strict=True):
                fill(scratch, rows)
        else:
            # list() waits for every chunk and re-raises a worker's exception here
            list(self._pool.map(fill, self._scratch, chunks))
        return forces

    def close(self) -> None:
        """Stop the worker threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
