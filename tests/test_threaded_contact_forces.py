"""The threaded contact-force pass gives, state by state, exactly the single-thread forces."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from metarl.envs.locomotion import LocomotionEnv, contact_forces  # noqa: E402
from metarl.envs.threaded_contact_forces import ThreadedContactForces  # noqa: E402


def _ant_states(n: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` Ant states from a random-action episode (it hops: some states touch the ground)."""
    env = LocomotionEnv("AntVel", "peers")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    qpos, qvel, ctrl = [], [], []
    for _ in range(n):
        action = rng.uniform(-1, 1, size=env.model.nu)
        env.step(action)
        qpos.append(env.data.qpos.copy())
        qvel.append(env.data.qvel.copy())
        ctrl.append(action)
    return env.model, np.array(qpos), np.array(qvel), np.array(ctrl)


@pytest.mark.parametrize("nthread", [1, 3])
def test_threaded_forces_equal_the_serial_forces(nthread: int) -> None:
    model, qpos, qvel, ctrl = _ant_states(40)
    scratch = mujoco.MjData(model)
    serial = np.stack([contact_forces(model, scratch, qpos[i], qvel[i], ctrl[i])
                       for i in range(len(qpos))])
    assert np.count_nonzero(np.abs(serial).sum(axis=(1, 2))) >= 5  # real contacts among them
    threaded = ThreadedContactForces(model, nthread)
    np.testing.assert_array_equal(threaded(qpos, qvel, ctrl), serial)
    threaded.close()
    threaded.close()  # idempotent; a closed pass computes on the calling thread
    np.testing.assert_array_equal(threaded(qpos, qvel, ctrl), serial)


def test_thread_count_is_checked() -> None:
    model, *_ = _ant_states(1)
    with pytest.raises(ValueError, match="nthread"):
        ThreadedContactForces(model, 0)
