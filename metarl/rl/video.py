"""Videos of a meta-policy adapting: before adaptation and after 1..k inner steps, side by side.

``record_video(run_dir)`` adapts a run's meta-parameters to a few held-out tasks with the same
protocol as ``metarl eval`` (``evaluate_adaptation``: fresh episodes per step drive the next
policy-gradient step), then replays the deterministic (mean) action of every adapted policy in a
single rendering environment per panel and writes one grid per time step -- rows are tasks,
columns are 0..k steps -- with the task and the step written above each panel, to an mp4 (and a
GIF if asked).

Rendering is offscreen. MuJoCo environments render through OpenGL: with no display this module
selects ``MUJOCO_GL=egl`` (Mesa's software renderer needs the Debian packages in
``GL_PACKAGES``); a context that cannot be created is one ``RenderBackendError`` line naming them.
"""

from __future__ import annotations

import functools
import inspect
import os
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from tqdm import tqdm

from metarl.config import TrainConfig, resolve_threads
from metarl.core.linalg import Params, params_device, params_to
from metarl.core.policies import GaussianMLPPolicy
from metarl.envs import make_task_vector_env
from metarl.envs.base import Task
from metarl.rl.device import evaluation_device
from metarl.rl.evaluation import chosen_checkpoint, evaluate_adaptation
from metarl.rl.policy import discrete_actions, load_params

__all__ = [
    "CAPTION_HEIGHT",
    "GL_PACKAGES",
    "RenderBackendError",
    "compose_grid",
    "log_video",
    "make_render_env",
    "record_video",
    "render_adaptation",
    "render_frame",
    "select_gl_backend",
    "set_render_quality",
    "panel_caption",
    "step_caption",
    "task_caption",
    "write_video",
]

DEFAULT_FPS = 20
DEFAULT_SIZE = 240
CAPTION_HEIGHT = 32  # two lines of 13 px text above each panel
GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0"
# ffmpeg's yuv420p needs even sizes, and imageio would otherwise rescale to a multiple of 16
# (with a warning); the grid is padded to it instead.
_BLOCK = 16
_CAPTION_BG = (32, 32, 36)
_CAPTION_FG = (240, 240, 240)
_CAPTION_DIM = (170, 170, 175)
# What a missing or broken OpenGL stack raises -- when mujoco is imported with MUJOCO_GL set
# (it loads the backend then) or when the first context is made: PyOpenGL cannot load the
# library (ImportError, or AttributeError on its unloaded entry points), the EGL display cannot
# be initialised or MUJOCO_GL is invalid (RuntimeError), ctypes (OSError).
_GL_ERRORS: tuple[type[Exception], ...] = (ImportError, AttributeError, RuntimeError, OSError)
# ... raised from one of these (path fragments of PyOpenGL and mujoco's GL context modules).
_GL_MODULES = tuple(
    os.sep.join(parts) + os.sep
    for parts in (("", "OpenGL"), ("mujoco", "egl"), ("mujoco", "osmesa"), ("mujoco", "glfw"))
) + (os.sep.join(("mujoco", "gl_context.py")),)


class RenderBackendError(OSError):
    """No offscreen OpenGL context could be created for rendering (a system set-up problem)."""


def _gl_failure(err: BaseException) -> RenderBackendError | None:
    """A one-line ``RenderBackendError`` if ``err`` came from the OpenGL stack, else None."""
    frames = traceback.extract_tb(err.__traceback__)
    if not any(fragment in frame.filename for frame in frames for fragment in _GL_MODULES):
        return None
    backend = os.environ.get("MUJOCO_GL", "auto")
    detail = " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return RenderBackendError(
        f"cannot create an offscreen OpenGL context with MUJOCO_GL={backend} ({detail}); "
        f"for MUJOCO_GL=egl without a GPU install the Debian packages {GL_PACKAGES} "
        "(or libosmesa6 for MUJOCO_GL=osmesa)"
    )


def select_gl_backend() -> str | None:
    """Choose MuJoCo's OpenGL backend: ``MUJOCO_GL=egl`` when unset and there is no display.

    Must run before the first rendering context is made (gymnasium reads ``MUJOCO_GL`` then).
    Returns the backend in force, or None when MuJoCo will pick one itself (a display exists).
    """
    if "MUJOCO_GL" not in os.environ and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ["MUJOCO_GL"] = "egl"
    return os.environ.get("MUJOCO_GL")


def _accepted(entry_point: Any, names: Iterable[str]) -> set[str]:
    """Which of ``names`` the environment constructor takes as keyword arguments."""
    try:
        parameters = inspect.signature(entry_point).parameters.values()
    except (TypeError, ValueError):
        return set()
    taken = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    return {name for name in names if name in taken or (takes_any and name in ("width", "height"))}


def make_render_env(
    env_id: str, width: int = DEFAULT_SIZE, height: int = DEFAULT_SIZE, **env_kwargs: Any
) -> gymnasium.Env[Any, Any]:
    """``gymnasium.make(env_id, render_mode="rgb_array")`` at ``width x height`` pixels.

    ``width``/``height`` and each of ``env_kwargs`` are passed only if the environment's
    constructor takes them (MuJoCo environments take ``width`` and ``height``); frames of another
    size are resized when composed. A MuJoCo model's camera named ``track`` (the locomotion
    robots' camera that follows them) is used unless the environment chose a camera. Raises
    ``ValueError`` for an unknown id, an environment that cannot render ``rgb_array`` frames, or
    an ``action_space`` other than ``"env"`` for an environment that takes none.
    """
    select_gl_backend()
    try:
        spec = gymnasium.spec(env_id)
    except gymnasium.error.Error as err:
        raise ValueError(f"cannot make environment {env_id!r}: {err}") from None
    try:
        # Loading a MuJoCo environment imports mujoco, which loads MUJOCO_GL's backend.
        creator: Any = spec.entry_point
        if isinstance(creator, str):
            creator = gymnasium.envs.registration.load_env_creator(creator)
        kwargs = {"width": width, "height": height, **env_kwargs}
        accepted = _accepted(creator, kwargs)
        if env_kwargs.get("action_space", "env") != "env" and "action_space" not in accepted:
            # dropping it would film the policy's actions in another unit
            raise ValueError(f"environment {env_id} takes no action_space setting")
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        env = gymnasium.make(env_id, render_mode="rgb_array", **kwargs)
    except gymnasium.error.Error as err:  # e.g. DependencyNotInstalled for mujoco
        raise ValueError(f"cannot make environment {env_id!r}: {err}") from None
    except _GL_ERRORS as err:
        gl_error = _gl_failure(err)
        if gl_error is None:
            raise
        raise gl_error from err
    if "rgb_array" not in env.metadata.get("render_modes", ()) or env.render_mode != "rgb_array":
        env.close()
        raise ValueError(f"environment {env_id} cannot render rgb_array frames")
    _follow_robot(env)
    return env


def _follow_robot(env: gymnasium.Env[Any, Any]) -> None:
    # gymnasium (>= 1.1) films MuJoCo environments through a free camera that stays where the
    # robot started, so a running robot leaves the picture. The locomotion models define a
    # camera "track" that follows the centre of mass (mode="trackcom"): use it unless a camera
    # was chosen explicitly.
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    model = getattr(env.unwrapped, "model", None)
    if renderer is None or model is None or getattr(renderer, "camera_id", None) != -1:
        return
    import mujoco

    track = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if track >= 0:
        renderer.camera_id = track


SHADOW_MAP = 1024  # shadow map side; MuJoCo's default 4096 costs ~35 ms and ~170 MB a context


def set_render_quality(env: gymnasium.Env[Any, Any], shadows: bool) -> None:
    """Shadows and reflections on (with a 1024-px shadow map) or off, for a MuJoCo environment.

    Software OpenGL spends most of a frame on them (docs/results/speed.md). Edits only visual fields
    of the environment's model, and must run before the first ``render_frame`` (which creates
    the OpenGL context, sized by the shadow map); other environments are left alone.
    """
    if not hasattr(env.unwrapped, "mujoco_renderer"):
        return
    model = getattr(env.unwrapped, "model", None)
    if model is None:
        return
    if shadows:
        model.vis.quality.shadowsize = min(model.vis.quality.shadowsize, SHADOW_MAP)
    else:
        model.vis.quality.shadowsize = 0
        model.light_castshadow[:] = 0
        model.mat_reflectance[:] = 0


def render_frame(env: gymnasium.Env[Any, Any]) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 frame of ``env`` (made with ``render_mode="rgb_array"``).

    A MuJoCo renderer's first frame creates its OpenGL context; if that fails the error is a
    one-line ``RenderBackendError`` naming the backend and the Debian packages it needs (as
    from ``make_render_env`` when importing mujoco already fails).
    """
    viewer = getattr(getattr(env.unwrapped, "mujoco_renderer", None), "viewer", None)
    if viewer is not None:
        # Several MuJoCo environments render in turn; each draws into its own GL context.
        viewer.make_context_current()
    try:
        frame = env.render()
    except _GL_ERRORS as err:
        gl_error = _gl_failure(err)
        if gl_error is None:
            raise
        raise gl_error from err
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an [H, W, 3] rgb_array frame, got shape {array.shape}")
    return np.ascontiguousarray(array[..., :3], dtype=np.uint8)


def _format_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def task_caption(task: Task) -> str:
    """The task's parameters, e.g. ``goal (0.31, -0.12)`` or ``velocity 1.23``."""
    return ", ".join(f"{name} {_format_value(value)}" for name, value in task.params)


def panel_caption(step: int, t: int, velocity: float | None, episode_return: float,
                  done: bool) -> str:
    """A panel's second caption line: the policy, its own clock (which stops when its episode
    ends), the robot's forward velocity where reported, and the return so far."""
    moving = "" if velocity is None else f" | v {velocity:.2f}"
    return (f"{step_caption(step)} | t {t}{moving} | return {episode_return:.1f}"
            + (" | done" if done else ""))


def step_caption(step: int) -> str:
    """``pre-update`` for step 0, then ``1 step``, ``2 steps``, ..."""
    if step == 0:
        return "pre-update"
    return f"{step} step" if step == 1 else f"{step} steps"


@functools.cache  # every frame captions every panel; load each size once
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable, with FreeType
    except (ImportError, OSError):  # a Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fitted_font(draw: Any, text: str, width: int, size: int = 13, smallest: int = 8) -> Any:
    """The largest font up to ``size`` px in which ``text`` fits ``width`` px (a long caption on
    a narrow panel would run into its neighbour's); the smallest where none fits."""
    for points in range(size, smallest - 1, -1):
        font = _font(points)
        if draw.textlength(text, font=font) <= width:
            return font
    return font


def _padded(length: int) -> int:
    return -(-length // _BLOCK) * _BLOCK


def compose_grid(
    panels: Sequence[Sequence[np.ndarray]],
    captions: Sequence[Sequence[tuple[str, str]]],
    panel_size: tuple[int, int],
) -> np.ndarray:
    """One frame: ``panels[row][col]`` (``[H, W, 3]`` uint8) in a grid, each under a two-line
    caption band ``CAPTION_HEIGHT`` px high. Panels are resized to ``panel_size`` (width,
    height) if needed; the whole frame is padded to a multiple of 16 px for the video encoder.
    """
    from PIL import Image, ImageDraw

    width, height = panel_size
    rows, cols = len(panels), len(panels[0])
    cell = height + CAPTION_HEIGHT
    canvas = Image.new("RGB", (_padded(cols * width), _padded(rows * cell)), _CAPTION_BG)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            image = Image.fromarray(panel)
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            x, y = c * width, r * cell
            canvas.paste(image, (x, y + CAPTION_HEIGHT))
            first, second = captions[r][c]
            draw.text((x + 5, y + 2), first, fill=_CAPTION_FG,
                      font=_fitted_font(draw, first, width - 10))
            draw.text((x + 5, y + 17), second, fill=_CAPTION_DIM,
                      font=_fitted_font(draw, second, width - 10))
    return np.asarray(canvas)


def _mean_action(policy: GaussianMLPPolicy, params: Params, obs: Any) -> np.ndarray:
    with torch.no_grad():
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32,
                                device=params_device(params)).reshape(-1)
        mean, _ = policy.distribution_params(params, obs_t)
    action: np.ndarray = mean.cpu().numpy()
    return action


def render_adaptation(
    env_id: str,
    policy: GaussianMLPPolicy,
    adapted: Sequence[Params],
    tasks: Sequence[Task],
    horizon: int,
    *,
    size: int = DEFAULT_SIZE,
    seed: int = 1000,
    shadows: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Yield grid frames of the deterministic policies: row ``i`` is ``tasks[i]``, column ``s``
    the parameters ``adapted[s]`` (each tensor with a leading task dimension, as returned by
    ``evaluate_adaptation``), from the reset state (frame 0) through ``horizon`` steps.

    All panels step in lockstep, so memory holds one grid at a time. A panel whose episode
    ended (terminated or truncated) stays on its last frame; the video stops when all have.
    Every panel of row ``i`` resets with seed ``seed + i``, so columns differ only by policy.
    """
    rows, cols = len(tasks), len(adapted)
    envs: list[list[gymnasium.Env[Any, Any]]] = []
    try:
        for _ in range(rows):
            envs.append([])
            for _ in range(cols):
                envs[-1].append(make_render_env(env_id, size, size, **(env_kwargs or {})))
        params = [[{k: v[i] for k, v in adapted[s].items()} for s in range(cols)]
                  for i in range(rows)]
        obs: list[list[Any]] = [[None] * cols for _ in range(rows)]
        frames: list[list[np.ndarray]] = [[] for _ in range(rows)]
        returns = np.zeros((rows, cols))
        done = np.zeros((rows, cols), dtype=bool)
        steps_taken = np.zeros((rows, cols), dtype=int)  # a finished panel's clock stops
        # the robot's forward velocity where the environment reports it, beside its target
        velocity: list[list[float | None]] = [[None] * cols for _ in range(rows)]
        for i, task in enumerate(tasks):
            for s, env in enumerate(envs[i]):
                set_task = getattr(env.unwrapped, "set_task", None)
                if set_task is None:
                    raise ValueError(f"environment {env_id} has no set_task: not a task env")
                set_task(task)
                set_render_quality(env, shadows)
                obs[i][s], _ = env.reset(seed=seed + i)
                frames[i].append(render_frame(env))
        titles = [task_caption(task) for task in tasks]

        def grid() -> np.ndarray:
            captions = [[(titles[i], panel_caption(s, int(steps_taken[i, s]), velocity[i][s],
                                                   float(returns[i, s]), bool(done[i, s])))
                         for s in range(cols)] for i in range(rows)]
            return compose_grid(frames, captions, (size, size))

        yield grid()
        for _ in tqdm(range(horizon), desc="render", disable=not progress, unit="step"):
            for i in range(rows):
                for s, env in enumerate(envs[i]):
                    if done[i, s]:
                        continue
                    action = _mean_action(policy, params[i][s], obs[i][s])
                    obs[i][s], reward, terminated, truncated, info = env.step(action)
                    returns[i, s] += float(reward)
                    steps_taken[i, s] += 1
                    done[i, s] = terminated or truncated
                    if "x_velocity" in info:
                        velocity[i][s] = float(info["x_velocity"])
                    frames[i][s] = render_frame(env)
            yield grid()
            if done.all():
                break
    finally:
        for row in envs:
            for env in row:
                env.close()


def write_video(
    path: Path, frames: Iterable[np.ndarray], fps: int = DEFAULT_FPS, gif: Path | None = None
) -> int:
    """Write ``frames`` (``[H, W, 3]`` uint8, all one size) to ``path``: an mp4 (H.264 with the
    ffmpeg that imageio-ffmpeg bundles) unless ``path`` ends in ``.gif``; also a GIF at ``gif``
    if given. Returns the number of frames; writes through a temporary file and a rename."""
    path = Path(path)
    outputs = [p for p in (path, gif) if p is not None]
    for out in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
    gif_frames: list[np.ndarray] = []
    count = 0
    mp4 = None if path.suffix.lower() == ".gif" else _mp4_writer(_partial(path), fps)
    try:
        for frame in frames:
            if mp4 is not None:
                mp4.append_data(frame)
            if len(outputs) > (mp4 is not None):
                gif_frames.append(frame)
            count += 1
        if count == 0:
            raise ValueError("no frames to write")
    except BaseException:  # also an interruption: leave no half-written file behind
        if mp4 is not None:
            mp4.close()
            _partial(path).unlink(missing_ok=True)
        raise
    if mp4 is not None:
        mp4.close()
        os.replace(_partial(path), path)
    for out in outputs:
        if out.suffix.lower() == ".gif":
            _write_gif(out, gif_frames, fps)
    return count


def _partial(path: Path) -> Path:
    # The suffix stays last so that ffmpeg still picks the container from it.
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _mp4_writer(path: Path, fps: int) -> Any:
    # imageio's FFMPEG plugin runs the ffmpeg binary that imageio-ffmpeg ships.
    missing = [name for name in ("imageio", "imageio_ffmpeg") if find_spec(name) is None]
    if missing:
        raise ValueError(f"writing mp4 needs {' and '.join(missing)}: pip install -e '.[video]'")
    import imageio.v2 as imageio

    return imageio.get_writer(
        str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
        pixelformat="yuv420p", macro_block_size=_BLOCK, ffmpeg_log_level="error",
    )


def _gif_bytes(frames: Sequence[np.ndarray], fps: int) -> bytes:
    """An animated, looping GIF of ``frames`` encoded by Pillow."""
    import io

    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=False)
    return buffer.getvalue()


def _write_gif(path: Path, frames: Sequence[np.ndarray], fps: int) -> None:
    tmp = _partial(path)
    tmp.write_bytes(_gif_bytes(frames, fps))
    os.replace(tmp, path)


_warned_tensorboard = False


def log_video(writer: Any, tag: str, frames: Sequence[np.ndarray], step: int,
              fps: int = DEFAULT_FPS) -> bool:
    """Log ``frames`` to TensorBoard as an animated GIF image (shown under Images); True if it
    was written.

    ``SummaryWriter.add_video`` needs moviepy < 2 and otherwise prints a line and writes
    nothing; this encodes the GIF with Pillow and writes the same image summary itself, through
    the writer's event file. If ``writer`` has no open event file it warns once and returns
    False.
    """
    global _warned_tensorboard
    file_writer = getattr(writer, "file_writer", None)
    if file_writer is None or not frames:
        if not _warned_tensorboard:
            warnings.warn("video not logged to TensorBoard: the writer is closed or the video "
                          "is empty", stacklevel=2)
            _warned_tensorboard = True
        return False
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width = frames[0].shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3,
                          encoded_image_string=_gif_bytes(frames, fps))
    file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    return True


def _has_discrete_actions(config: TrainConfig) -> bool:
    """Whether the run's family acts by index; an id that is no task family is left to the
    renderer, which names what it cannot make or render."""
    try:
        env = make_task_vector_env(config.env_id, 1, config.physics)
    except ValueError:
        return False
    discrete = discrete_actions(env) is not None
    env.close()
    return discrete


def record_video(
    run_dir: str | Path,
    *,
    tasks: int = 2,
    steps: int | None = None,
    episodes: int = 20,
    seed: int = 1000,
    checkpoint: str | None = None,
    params: Params | None = None,
    out: str | Path | None = None,
    gif: bool = False,
    size: int = DEFAULT_SIZE,
    horizon: int | None = None,
    shadows: bool = False,
    tensorboard: Any = None,
    global_step: int = 0,
    progress: bool = False,
    device: str | None = None,
    torch_threads: int | None = None,
) -> Path:
    """Render a run's meta-policy before and after 1..``steps`` inner steps on ``tasks``
    held-out tasks (seeded by ``seed``) and write the video; returns its path.

    ``steps`` and ``horizon`` default to the run's ``eval_steps`` and ``horizon``; ``episodes``
    are the episodes per task and step that drive the adaptation (``evaluate_adaptation``).
    ``params`` replaces the ``checkpoint`` (``best`` or ``last``; default: the run's
    ``eval_checkpoint``) -- for a trainer recording its
    current parameters. ``out`` defaults to ``RUN_DIR/video.mp4``; a ``.gif`` name writes only a
    GIF, and ``gif=True`` also writes one beside the mp4 (same name, ``.gif``). ``size`` is
    each panel's width and height in pixels; ``shadows`` turns MuJoCo's shadows and
    reflections on (about 3x slower in software, see ``set_render_quality``). ``tensorboard``,
    a ``SummaryWriter``, also receives the video at ``global_step`` (see ``log_video``); that,
    like a GIF, holds every frame in memory (the mp4 alone is written one frame at a time).
    The checkpoint's policy adapts on ``device``, by default the run's own (the CPU, with a
    note, where that is cuda and there is none); ``params`` adapt where they are.
    """
    run_dir = Path(run_dir)
    config, _, checkpoint_path = chosen_checkpoint(run_dir, checkpoint)
    if _has_discrete_actions(config):
        raise ValueError(f"metarl video renders the continuous task families; {config.env_id} "
                         "has discrete actions and nothing to render")
    steps = config.eval_steps if steps is None else steps
    horizon = config.horizon if horizon is None else horizon
    for name, value, low in (("tasks", tasks, 1), ("steps", steps, 0), ("episodes", episodes, 1),
                             ("seed", seed, 0), ("size", size, 16), ("horizon", horizon, 1)):
        if value < low:
            raise ValueError(f"--{name} must be >= {low}, got {value}")
    out_path = run_dir / "video.mp4" if out is None else Path(out)
    if out_path.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"--out must end in .mp4 or .gif, got {out_path}")
    gif_path = out_path.with_suffix(".gif") if gif and out_path.suffix.lower() == ".mp4" else None

    env_kwargs = _env_kwargs(config)
    # Fail on an environment that cannot render before spending time on the adaptation.
    probe = make_render_env(config.env_id, size, size, **env_kwargs)
    fps = int(probe.metadata.get("render_fps") or DEFAULT_FPS)
    probe.close()

    if params is None:
        params = params_to(load_params(checkpoint_path, config)[0],
                           evaluation_device(config.device, device))
    torch.set_num_threads(resolve_threads(
        config.torch_threads if torch_threads is None else torch_threads))
    outcome = evaluate_adaptation(config, params, tasks, steps, episodes, seed)
    frames = render_adaptation(
        config.env_id, outcome["policy"], outcome["adapted"], outcome["tasks"], horizon,
        size=size, seed=seed, shadows=shadows, env_kwargs=env_kwargs, progress=progress,
    )
    if tensorboard is not None:
        kept = list(frames)
        frames = iter(kept)
    write_video(out_path, frames, fps, gif_path)
    if tensorboard is not None:
        log_video(tensorboard, "video/adaptation", kept, global_step, fps)
    return out_path


def _env_kwargs(config: TrainConfig) -> dict[str, Any]:
    # The MuJoCo families take the run's `physics` setting and every metarl environment its
    # `action_space` (the policy's actions are in that space); make_render_env passes each only
    # to constructors that take it.
    kwargs = {name: getattr(config, name) for name in ("physics", "action_space")
              if getattr(config, name, None) is not None}
    return kwargs
