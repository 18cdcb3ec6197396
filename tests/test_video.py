"""`metarl video`: offscreen rendering, the panel grid, the mp4/GIF files and TensorBoard.

A real (tiny) navigation run is trained once for the module; the videos are read back with
imageio to check their frame count and layout. The MuJoCo smoke test needs an OpenGL backend
(EGL with Mesa's software renderer here) and skips, saying why, when none can be created.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

import metarl.envs  # noqa: F401  (registers the metarl/ environments)
from metarl.cli import main
from metarl.envs import Navigation2DEnv, Task
from metarl.rl.video import (
    CAPTION_HEIGHT,
    RenderBackendError,
    compose_grid,
    log_video,
    make_render_env,
    panel_caption,
    record_video,
    render_frame,
    set_render_quality,
    step_caption,
    task_caption,
    write_video,
)

imageio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")

HORIZON = 10
SIZE = 96  # panel side; 2 x (96 + 32) = 256 and 2 x 96 = 192 are multiples of 16, so no padding


@pytest.fixture(autouse=True)
def _restore_gl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # make_render_env sets MUJOCO_GL (and mujoco's EGL module PYOPENGL_PLATFORM) for the whole
    # process; undo that after each test so that other tests import mujoco as they would alone.
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("video") / "run"
    code = main(["train", "navigation2d_peers", "--run-dir", str(run_dir), "--iterations", "1",
                 "--meta-batch-size", "2", "--episodes-per-task", "2", "--horizon", str(HORIZON),
                 "--torch-threads", "1", "--no-progress"])
    assert code == 0
    return run_dir


def _one_error_line(capsys: pytest.CaptureFixture[str], needle: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("metarl: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_cli_writes_an_mp4_and_a_gif_of_the_grid(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["video", str(run), "--tasks", "2", "--steps", "1", "--episodes", "2",
                 "--size", str(SIZE), "--gif", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    mp4, gif = run / "video.mp4", run / "video.gif"
    assert str(mp4) in out and str(gif) in out
    assert mp4.stat().st_size > 2000
    # rows = 2 tasks, columns = steps 0..1; the reset frame and one per step
    shape = (HORIZON + 1, 2 * (SIZE + CAPTION_HEIGHT), 2 * SIZE, 3)
    for path in (mp4, gif):
        frames = np.asarray(imageio.imread(path, index=None))
        assert frames.shape == shape, path
        assert frames.dtype == np.uint8
        # the points move: the last frame is not the first
        assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.1
    assert not list(run.glob(".*partial*"))


def test_out_gif_writes_only_a_gif(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "films" / "adapt.gif"
    code = main(["video", str(run), "--tasks", "1", "--steps", "2", "--episodes", "2",
                 "--size", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    frames = np.asarray(imageio.imread(out, index=None))
    # 1 row x 3 columns of 32 px; 32 + 32 = 64 high, 96 wide
    assert frames.shape == (HORIZON + 1, 64, 96, 3)
    assert not out.with_suffix(".mp4").exists()


def test_missing_run_dir_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["video", str(tmp_path / "nope")]) == 1
    _one_error_line(capsys, "does not exist")
    assert main(["video", str(tmp_path)]) == 1
    _one_error_line(capsys, "no config.yaml")


class _Blind(gymnasium.Env[np.ndarray, np.ndarray]):
    """An environment that cannot render."""

    metadata = {"render_modes": []}

    def __init__(self, **kwargs: Any) -> None:
        self.observation_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)
        self.render_mode = kwargs.get("render_mode")


@pytest.mark.filterwarnings("ignore:.*render_mode")
@pytest.mark.parametrize(("env_id", "needle"), [
    ("metarl-test/Blind-v0", "cannot render rgb_array frames"),
    ("metarl/Nope-v0", "cannot make environment"),
])
def test_env_without_rgb_array_is_one_error_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], env_id: str, needle: str
) -> None:
    if "metarl-test/Blind-v0" not in gymnasium.registry:
        gymnasium.register("metarl-test/Blind-v0", entry_point=_Blind)
    other = tmp_path / "run"
    other.mkdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["env_id"] = env_id
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["video", str(other), "--no-progress"]) == 1
    _one_error_line(capsys, needle)


def test_bad_out_suffix_is_one_error_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["video", str(run), "--out", str(tmp_path / "a.avi"), "--no-progress"]) == 1
    _one_error_line(capsys, "--out must end in .mp4 or .gif")


def test_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    def frames():
        yield np.zeros((32, 32, 3), dtype=np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "x.mp4", frames())
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "y.mp4", iter([]))
    assert not list(tmp_path.iterdir())


def test_captions() -> None:
    assert task_caption(Task.of(goal=[0.3149, -0.12])) == "goal (0.31, -0.12)"
    assert task_caption(Task.of(velocity=1.234)) == "velocity 1.23"
    assert [step_caption(s) for s in range(3)] == ["pre-update", "1 step", "2 steps"]
    assert panel_caption(1, 37, 1.234, -12.345, True) == (
        "1 step | t 37 | v 1.23 | return -12.3 | done")
    assert panel_caption(0, 5, None, 2.0, False) == "pre-update | t 5 | return 2.0"


def test_compose_grid_places_panels_and_pads_to_16() -> None:
    red = np.zeros((20, 30, 3), dtype=np.uint8)
    red[..., 0] = 255
    blue = np.zeros((10, 10, 3), dtype=np.uint8)  # another size: resized to the panel
    blue[..., 2] = 255
    grid = compose_grid([[red, blue]], [[("a", "b"), ("c", "d")]], (30, 20))
    assert grid.shape == (64, 64, 3)  # 20 + 32 = 52 -> 64 rows, 60 -> 64 columns
    assert tuple(grid[CAPTION_HEIGHT + 10, 15]) == (255, 0, 0)
    assert tuple(grid[CAPTION_HEIGHT + 10, 45]) == (0, 0, 255)
    assert grid[:CAPTION_HEIGHT, :30].std() > 0  # the caption text is drawn


def test_a_long_caption_stays_in_its_own_panel() -> None:
    # the Ant's second line on a 240 px panel ran into the next panel's caption
    black = np.zeros((40, 240, 3), dtype=np.uint8)
    long = "pre-update | t 194 | v -0.65 | return -136.7 | done"
    grid = compose_grid([[black, black]], [[("velocity 1.56", long), ("", "")]], (240, 40))
    band = grid[:CAPTION_HEIGHT]
    drawn = (band != band[0, -1]).any(axis=2)  # pixels other than the caption background
    assert not drawn[:, 240:].any()  # the right panel's captions are empty: nothing drawn there
    assert drawn[:, :240].any()


@pytest.mark.filterwarnings("ignore:.*infinity")  # positions are unbounded by design
def test_navigation_renders_the_arena_with_numpy() -> None:
    made = gymnasium.make("metarl/Navigation2D-v0", render_mode="rgb_array", width=120, height=100)
    check_env(made.unwrapped)  # also renders, and tries the other render modes
    env = Navigation2DEnv(render_mode="rgb_array", width=120, height=100)
    env.set_task(Task.of(goal=[0.3, -0.3]))
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (100, 120, 3) and frame.dtype == np.uint8
    # 100 px for 1.2 units: the goal (0.3, -0.3) is at column 60 + 25, row 50 + 25
    assert tuple(frame[75, 85]) == (214, 39, 40)
    assert tuple(frame[50, 60]) == (31, 90, 180)  # the point at the origin
    env.step(np.array([0.1, 0.1], dtype=np.float32))
    moved = env.render()
    assert moved is not None and tuple(moved[50 - 8, 60 + 8]) == (31, 90, 180)
    assert Navigation2DEnv().render() is None
    with pytest.raises(ValueError, match="render_mode"):
        Navigation2DEnv(render_mode="human")


def test_tensorboard_receives_an_animated_gif(run: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from metarl.run.checkpoint import load_checkpoint

    params = load_checkpoint(run / "checkpoints" / "last.pt")["params"]
    writer = SummaryWriter(str(tmp_path / "tb"))
    path = record_video(run, tasks=1, steps=1, episodes=2, size=32, horizon=3, params=params,
                        out=tmp_path / "v.mp4", tensorboard=writer, global_step=7)
    writer.close()
    assert path == tmp_path / "v.mp4" and path.stat().st_size > 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    (image,) = events.Images("video/adaptation")
    assert image.step == 7 and (image.width, image.height) == (64, 64)
    assert image.encoded_image_string.startswith(b"GIF89a")
    frames = np.asarray(imageio.imread(image.encoded_image_string, index=None, extension=".gif"))
    assert frames.shape[0] == 4
    with pytest.warns(UserWarning, match="not logged to TensorBoard"):
        assert not log_video(writer, "video/adaptation", [frames[0]], 8)  # closed writer


def test_mujoco_frame_offscreen() -> None:
    pytest.importorskip("mujoco")
    frames = []
    for shadows in (True, False):
        try:  # with MUJOCO_GL set, importing mujoco already loads the OpenGL backend
            env = make_render_env("HalfCheetah-v5", 64, 48)
        except RenderBackendError as err:
            pytest.skip(f"no OpenGL backend: {err}")
        try:
            set_render_quality(env, shadows=shadows)
            env.reset(seed=0)
            try:
                frames.append(render_frame(env))
            except RenderBackendError as err:
                pytest.skip(f"no OpenGL backend: {err}")
        finally:
            env.close()
    lit, plain = frames
    assert lit.shape == (48, 64, 3) and lit.dtype == np.uint8 and lit.std() > 5
    assert plain.shape == lit.shape and not np.array_equal(plain, lit)


@pytest.mark.skipif(bool(ctypes.util.find_library("OSMesa")), reason="OSMesa is installed")
def test_missing_gl_library_is_one_error_line(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    script = textwrap.dedent("""
        from metarl.rl.video import make_render_env, render_frame
        env = make_render_env("HalfCheetah-v5", 32, 32)
        env.reset(seed=0)
        render_frame(env)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["MUJOCO_GL"] = "osmesa"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    prefix = "metarl.rl.video.RenderBackendError: cannot create an offscreen OpenGL"
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.stderr
    assert "MUJOCO_GL=osmesa" in lines[0] and "libegl1 libegl-mesa0 libgl1-mesa-dri" in lines[0]
