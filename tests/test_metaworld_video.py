"""Videos of Meta-World: offscreen frames through metarl.rl.video, upright, one per task, and a
whole (tiny) run filmed. Skips, saying why, where no OpenGL context can be made."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from metarl.config import load_config, save_config
from metarl.core.policies import GaussianMLPPolicy
from metarl.rl.video import RenderBackendError, make_render_env, record_video, render_frame

pytest.importorskip("metaworld")
imageio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "metaworld_smoke.yaml"


@pytest.fixture(autouse=True)
def _restore_gl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # make_render_env selects MUJOCO_GL for the whole process; undo it after each test
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


def _frame_or_skip(env: object) -> np.ndarray:
    try:
        return render_frame(env)  # type: ignore[arg-type]
    except RenderBackendError as err:
        pytest.skip(f"no OpenGL backend: {err}")


def test_frames_show_each_task_upright() -> None:
    try:
        env = make_render_env("metarl/ML1-reach-v3", 64, 48)
    except RenderBackendError as err:
        pytest.skip(f"no OpenGL backend: {err}")
    try:
        task_env = env.unwrapped
        frames = []
        for task in task_env.benchmark.tasks["test"][:2]:  # type: ignore[attr-defined]
            task_env.set_task(task)  # type: ignore[attr-defined]
            env.reset(seed=0)
            frames.append(_frame_or_skip(env))
        raw = task_env._inner.render()  # type: ignore[attr-defined]
    finally:
        env.close()
    first, second = frames
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8 and first.std() > 5
    assert not np.array_equal(first, second)  # the goal marker moved
    # the corner camera's frame, turned by 180 degrees
    np.testing.assert_array_equal(second, raw[::-1, ::-1, :3])


@pytest.mark.slow  # two more software GL contexts and an adaptation: about 12 s here
def test_a_meta_world_run_is_filmed(tmp_path: Path) -> None:
    config = load_config(SMOKE)  # the smoke preset's run, with fresh parameters
    save_config(config, tmp_path / "config.yaml")
    params = GaussianMLPPolicy(39, 4, config.hidden_sizes).initial_params()
    out = tmp_path / "adapt.mp4"
    try:
        record_video(tmp_path, tasks=1, steps=1, episodes=2, horizon=4, size=64, out=out,
                     params=params)
    except RenderBackendError as err:
        pytest.skip(f"no OpenGL backend: {err}")
    frames = imageio.imread(out)
    assert frames.shape[0] == 5  # the reset frame and 4 steps
    assert frames.shape[2] == 2 * 64  # pre-update and one step side by side
