"""2D point navigation, the MAML paper's simplest meta-RL benchmark (Finn et al. 2017,
arXiv:1703.03400, Sec. 5.3).

A point starts at the origin and must reach a goal drawn uniformly from [-0.5, 0.5]^2. The
observation is its 2-D position, the action a velocity clipped to [-0.1, 0.1] per axis, and the
reward after each step minus the Euclidean distance to the goal. An episode ends when the point is
within 0.01 of the goal on both axes; the horizon (100 in the paper) is the rollout's business.

Actions: the paper's point environment (github.com/cbfinn/maml_rl, ``point_env_randgoal.py``)
does not clip; its bounds +-0.1 took effect through the ``NormalizedEnv`` wrapper around it,
which maps the policy's [-1, 1]^2 onto them and clips. Here the environment clips into +-0.1
itself, and ``action_space="unit"`` adds that wrapper's map (``metarl.envs.action_map``): the
policy then acts in [-1, 1]^2 and a unit action is a step of 0.1. With the default
``action_space="env"`` the policy's actions are velocities, clipped to +-0.1.

``render_mode="rgb_array"`` draws the arena [-0.6, 0.6]^2 with numpy alone (no display, no
OpenGL): the square the goals are drawn from, the goal, the point and the path it took.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.action_map import ActionMap
from metarl.envs.base import Task, TaskEnv, TaskVectorEnv, check_task_count, checked_action

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_SPEED = 0.1
SUCCESS_RADIUS = 0.01
ARENA = 0.6  # half-width of the drawn area

# Colours (RGB) of the numpy drawing.
_BACKGROUND = (248, 248, 244)
_GOAL_SQUARE = (200, 200, 195)
_GOAL = (214, 39, 40)
_PATH = (120, 150, 200)
_POINT = (31, 90, 180)


def sample_goals(n: int, rng: np.random.Generator) -> list[Task]:
    goals = rng.uniform(GOAL_LOW, GOAL_HIGH, size=(n, 2))
    return [Task.of(goal=g) for g in goals]


def navigation_step(
    positions: np.ndarray, actions: np.ndarray, goals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance points ``[..., 2]`` by clipped velocities; returns positions, rewards, terminated."""
    positions = positions + np.clip(actions, -MAX_SPEED, MAX_SPEED)
    offset = positions - goals
    rewards = -np.sqrt(np.sum(offset**2, axis=-1))
    terminated = np.all(np.abs(offset) < SUCCESS_RADIUS, axis=-1)
    return positions, rewards, terminated


def _spaces() -> tuple[gymnasium.spaces.Box, gymnasium.spaces.Box]:
    observation = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action = gymnasium.spaces.Box(-MAX_SPEED, MAX_SPEED, shape=(2,), dtype=np.float32)
    return observation, action


class Navigation2DEnv(TaskEnv[np.ndarray, np.ndarray]):
    """One point, one goal. Registered as ``metarl/Navigation2D-v0``."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        goal: Sequence[float] = (0.0, 0.0),
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
        action_space: str = "env",
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            known = ", ".join(self.metadata["render_modes"])
            raise ValueError(f"render_mode must be None or one of {known}, got {render_mode!r}")
        if width < 8 or height < 8:
            raise ValueError(f"width and height must be >= 8 pixels, got {width}x{height}")
        self.observation_space, bounds = _spaces()
        self._action_map = ActionMap(bounds, action_space)
        self.action_space = self._action_map.space
        self.render_mode = render_mode
        self.width, self.height = width, height
        self._task = Task.of(goal=np.asarray(goal, dtype=np.float64))
        self._position = np.zeros(2)
        self._path = [self._position]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_goals(n, rng)

    def set_task(self, task: Task) -> None:
        self._task = task

    @property
    def task(self) -> Task:
        return self._task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = np.zeros(2)
        self._path = [self._position]
        return self._position.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        position, reward, terminated = navigation_step(
            self._position, self._action_map(checked_action(action, (2,))),
            self._task.as_array("goal"),
        )
        self._position = position
        self._path.append(position)
        return position.astype(np.float32), float(reward), bool(terminated), False, {}

    def render(self) -> np.ndarray | None:
        """An ``[height, width, 3]`` uint8 picture of the arena, or None without a render mode."""
        if self.render_mode is None:
            return None
        return draw_arena(
            self.width, self.height, self._task.as_array("goal"), np.stack(self._path)
        )


def draw_arena(width: int, height: int, goal: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Draw the arena [-ARENA, ARENA]^2, ``goal`` and the points of ``path`` ``[T, 2]`` (the
    last one is the current position, drawn on the edge when it is outside) into a
    ``[height, width, 3]`` uint8 image, y pointing up."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _BACKGROUND
    scale = min(width, height) / (2 * ARENA)  # pixels per unit, same on both axes

    def to_pixels(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = np.floor(width / 2 + points[..., 0] * scale).astype(np.int64)
        rows = np.floor(height / 2 - points[..., 1] * scale).astype(np.int64)
        return rows, cols

    def paint(points: np.ndarray, radius: float, colour: tuple[int, int, int]) -> None:
        # Stamp a disk of `radius` (world units) at each point: pixel offsets within the disk,
        # added to every point's pixel, clipped to the image.
        r = max(1, int(np.ceil(radius * scale)))
        dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
        inside = dy**2 + dx**2 <= (radius * scale) ** 2 + 0.5
        rows, cols = to_pixels(points.reshape(-1, 2))
        rows = (rows[:, None] + dy[inside][None, :]).ravel()
        cols = (cols[:, None] + dx[inside][None, :]).ravel()
        keep = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        image[rows[keep], cols[keep]] = colour

    # outline of the square the goals are drawn from
    edge = np.linspace(GOAL_LOW, GOAL_HIGH, int(4 * (GOAL_HIGH - GOAL_LOW) * scale) + 2)
    low, high = np.full_like(edge, GOAL_LOW), np.full_like(edge, GOAL_HIGH)
    outline = np.concatenate([np.stack(side, axis=1) for side in
                              ((edge, low), (edge, high), (low, edge), (high, edge))])
    paint(outline, 0.0, _GOAL_SQUARE)
    paint(goal, 0.03, _GOAL)
    if len(path) > 1:  # the path as densely sampled segments, about two samples per pixel
        steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
        samples = [np.linspace(a, b, int(2 * d * scale) + 2) for a, b, d in
                   zip(path[:-1], path[1:], steps)]
        paint(np.concatenate(samples), 0.004, _PATH)
    paint(np.clip(path[-1], -ARENA, ARENA), 0.02, _POINT)  # at the edge when outside
    return image


class Navigation2DVectorEnv(TaskVectorEnv):
    """``num_envs`` points stepped as one array operation, each with its own goal."""

    def __init__(self, num_envs: int, action_space: str = "env") -> None:
        super().__init__(num_envs)
        self.single_observation_space, bounds = _spaces()
        self._action_map = ActionMap(bounds, action_space)
        self.single_action_space = self._action_map.space
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self._goals = np.zeros((num_envs, 2))
        self._positions = np.zeros((num_envs, 2))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return sample_goals(n, rng)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        check_task_count(tasks, self.num_envs)
        self._goals = np.stack([t.as_array("goal") for t in tasks])

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._positions = np.zeros((self.num_envs, 2))
        return self._positions.astype(np.float32), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._positions, rewards, terminated = navigation_step(
            self._positions, self._action_map(checked_action(actions, (self.num_envs, 2))),
            self._goals,
        )
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._positions.astype(np.float32), rewards, terminated, truncated, {}
