"""experiments/ant_rllab_model.py: its variants change gymnasium's Ant exactly as rllab's model
differs (time step, contact softness) and nothing else, and it runs at a tiny size."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ant_rllab_model", ROOT / "experiments" / "ant_rllab_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_change_the_time_step_and_contact_softness_only() -> None:
    script = _script()
    metarl, time_step, contacts = (script.variant_model(name) for name in script.VARIANTS)
    assert metarl.opt.timestep == 0.01
    assert time_step.opt.timestep == contacts.opt.timestep == 0.02
    # every geom, the floor's too, takes the default class's softness, as in rllab's file
    assert np.allclose(metarl.geom_solimp[:, :3], [0.9, 0.95, 0.001])
    assert np.allclose(time_step.geom_solimp, metarl.geom_solimp)
    assert np.allclose(contacts.geom_solimp[:, :3], [0.8, 0.8, 0.01])
    for model in (time_step, contacts):  # the same robot otherwise
        assert np.array_equal(model.body_mass, metarl.body_mass)
        assert np.array_equal(model.actuator_gear, metarl.actuator_gear)
        assert np.array_equal(model.jnt_range, metarl.jnt_range)


def test_every_variant_steps_at_the_papers_control_step(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    script = _script()
    for name in script.VARIANTS:
        env = script.make_env(name)
        assert env.dt == pytest.approx(0.02)
        env.close()
    results = script.run_episodes("rllab_contacts", episodes=2, velocity=1.0, horizon=5)
    assert results["length"].tolist() == [5, 5]
    assert np.all(np.isfinite(results["return"]))
