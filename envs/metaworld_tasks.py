"""Meta-World's ML1 and ML10 benchmarks (Yu et al. 2019, arXiv:1910.10897) as metarl task
distributions, on the same rollout path as every other family.

Benchmarks and environment ids (the ``-v3`` is Meta-World's task version):

- ``metarl/ML1-<name>-v3``, e.g. ``metarl/ML1-reach-v3``: one manipulation task of the 50 in
  ``ML1_TASK_NAMES``. Its tasks are 50 training and 50 test variations (initial object and goal
  positions) that Meta-World draws for the benchmark.
- ``metarl/ML10-v3``: 10 training task classes and 5 held-out test classes, 50 variations each.

Meta-World draws the variations from numpy's global generator; metarl builds each benchmark with
the fixed seed ``BENCHMARK_SEED``, so every process, run and machine sees the same task lists.
``sample_tasks`` draws training tasks; ``sample_test_tasks`` the benchmark's test tasks, which
held-out evaluation uses (``metarl.envs.sample_held_out_tasks``; ML1: the 50 test goals).

A metarl ``Task`` here holds ``env_name`` (the Meta-World task class, e.g. ``reach-v3``),
``split`` (``train`` or ``test``), ``index`` (its position in that split's list) and ``rand_vec``
(Meta-World's variation vector: the initial object position(s) followed by the goal).

Observation (39-D, float64): hand position, gripper opening and 14 object values (positions and
quaternions, zero-padded) now and one step earlier, then the goal position, which the ML
benchmarks zero (the goal must be inferred from rewards). Action (4-D): hand displacement
(1 cm per unit per step) and gripper effort, clipped into [-1, 1] before Meta-World sees it
(these bounds are already the unit box, so ``action_space="unit"`` changes nothing here).
Reward: Meta-World's v2 shaped reward, in [0, 10] per step. ``info["success"]`` is True on a
step where the task's success criterion holds (reach: the gripper within 5 cm of the goal); an
episode succeeds if it does on any step, the metric of Meta-World's paper. Episodes are
truncated after ``MAX_PATH_LENGTH`` = 500 steps (Meta-World's ``max_path_length``); they never
terminate.

Meta-World's rewards are Python code per task class, so there is no batched simulator:
``MetaWorldVectorEnv`` steps one Meta-World environment per sub-environment in a loop. Its
sub-environments of one task class share one compiled ``MjModel`` (about 20 MB each, mostly
meshes); Meta-World's resets move bodies and sites of the model (``body_pos``, ``site_pos``), so
every sub-environment keeps its own copy of those two arrays and swaps it in around each of its
resets and steps. Each sub-environment thus behaves exactly as an environment of its own
(tested against independent environments).

Meta-World is imported only when one of these environments is made; without the ``metaworld``
extra that is a one-line ``ValueError``.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.action_map import ActionMap
from metarl.envs.base import Task, TaskEnv, TaskVectorEnv, check_task_count, checked_action

# Meta-World 3.x's 50 task classes, in its own order (a test checks them against the package).
ML1_TASK_NAMES = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3", "faucet-open-v3",
    "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
    "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3",
    "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3",
    "plate-slide-back-v3", "plate-slide-back-side-v3", "peg-insert-side-v3",
    "peg-unplug-side-v3", "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-v3",
    "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3", "shelf-place-v3",
    "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)
BENCHMARKS = ("ML1", "ML10")
BENCHMARK_SEED = 0
MAX_PATH_LENGTH = 500
OBS_DIM, ACT_DIM = 39, 4
DEFAULT_CAMERA = "corner3"  # Meta-World's view of the whole table top, the robot and the goal
# Meta-World's fixed corner cameras point their image "up" axis downwards (set up for mujoco-py,
# whose frames came bottom-up): through gymnasium's renderer their frames are rotated by 180
# degrees, and ``render`` turns them back.
ROTATED_CAMERAS = ("corner", "corner2", "corner3", "corner4")
SPLITS = ("train", "test")


def import_metaworld() -> ModuleType:
    """The ``metaworld`` package, or a one-line ``ValueError`` naming the extra to install."""
    try:
        import metaworld
    except ImportError as err:
        raise ValueError(
            f"Meta-World environments need the metaworld extra ({err.name} is missing): "
            "pip install -e '.[metaworld]'"
        ) from None
    return metaworld


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's task classes and its training and test tasks, as metarl tasks."""

    name: str  # "ML1-reach-v3" or "ML10"
    classes: dict[str, type]  # Meta-World env name -> environment class, both splits
    tasks: dict[str, tuple[Task, ...]]  # split -> tasks
    native: dict[str, tuple[Any, ...]]  # split -> the same tasks as Meta-World Task objects

    def metaworld_task(self, task: Task) -> Any:
        """The Meta-World ``Task`` that ``task`` stands for; a ``ValueError`` for a task that is
        not one of this benchmark's."""
        try:
            split, index = task["split"], task["index"]
            known = self.tasks[split][index]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{task} is not a task of Meta-World {self.name}") from None
        if known != task:
            raise ValueError(f"{task} is not a task of Meta-World {self.name} "
                             f"({split} task {index} is {known})")
        return self.native[split][index]

    def all_tasks(self) -> tuple[Task, ...]:
        """Every task of the benchmark, training then test."""
        return self.tasks["train"] + self.tasks["test"]

    def sample(self, split: str, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks of ``split`` drawn uniformly without replacement while they last.

        Training draws beyond the pool size are made with replacement; the test split refuses
        them, since a held-out task counted twice would narrow its confidence interval.
        """
        pool = self.tasks[split]
        if n <= len(pool):
            chosen = rng.choice(len(pool), size=n, replace=False)
        elif split == "train":
            chosen = rng.choice(len(pool), size=n, replace=True)
        else:
            raise ValueError(f"Meta-World {self.name} has {len(pool)} test tasks, "
                             f"asked for {n}")
        return [pool[int(i)] for i in chosen]


def _check_names(benchmark: str, env_name: str | None) -> str:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown Meta-World benchmark {benchmark!r} "
                         f"(known: {', '.join(BENCHMARKS)})")
    if benchmark == "ML1":
        if env_name not in ML1_TASK_NAMES:
            raise ValueError(f"unknown Meta-World task {env_name!r} "
                             f"(known: {', '.join(ML1_TASK_NAMES)})")
        return f"ML1-{env_name}"
    if env_name is not None:
        raise ValueError(f"{benchmark} takes no env_name, got {env_name!r}")
    return benchmark


@functools.cache
def load_benchmark(benchmark: str, env_name: str | None = None) -> Benchmark:
    """Build Meta-World's ``ML1(env_name)`` or ``ML10`` with ``BENCHMARK_SEED``; cached per
    process (ML1 takes about a second, ML10 about ten: Meta-World resets every class 50 times
    per split to draw the variations)."""
    name = _check_names(benchmark, env_name)
    metaworld = import_metaworld()
    if benchmark == "ML1":
        built = metaworld.ML1(env_name, seed=BENCHMARK_SEED)
    else:
        built = getattr(metaworld, benchmark)(seed=BENCHMARK_SEED)
    classes = {**built.train_classes, **built.test_classes}
    native = {"train": tuple(built.train_tasks), "test": tuple(built.test_tasks)}
    tasks = {
        split: tuple(
            Task.of(env_name=mw.env_name, split=split, index=i,
                    rand_vec=np.asarray(pickle.loads(mw.data)["rand_vec"], dtype=np.float64))
            for i, mw in enumerate(native[split])
        )
        for split in SPLITS
    }
    return Benchmark(name, classes, tasks, native)


def _observation_space(metaworld_space: gymnasium.spaces.Box) -> gymnasium.spaces.Box:
    """Meta-World's bounds (it clips observations into them), except that its zeroed goal gets
    open bounds: a Box whose bounds are equal makes gymnasium's environment checker warn."""
    low, high = metaworld_space.low.copy(), metaworld_space.high.copy()
    low[-3:], high[-3:] = -np.inf, np.inf
    return gymnasium.spaces.Box(low, high, dtype=np.float64)


def _action_space() -> gymnasium.spaces.Box:
    return gymnasium.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)


class MetaWorldEnv(TaskEnv[np.ndarray, np.ndarray]):
    """One Meta-World environment whose task is a benchmark task; registered as
    ``metarl/ML1-<name>-v3`` and ``metarl/ML10-v3``.

    It holds a Meta-World environment of the current task's class (replaced when ``set_task``
    switches class, as ML10's tasks do) and starts on the first training task. ``render_mode``,
    ``width``, ``height`` and ``camera_name`` go to Meta-World's renderer.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array", "depth_array"],
                                "render_fps": 80}

    def __init__(self, benchmark: str, env_name: str | None = None,
                 render_mode: str | None = None, width: int = 480, height: int = 480,
                 camera_name: str = DEFAULT_CAMERA, action_space: str = "env") -> None:
        self.benchmark = load_benchmark(benchmark, env_name)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            known = ", ".join(self.metadata["render_modes"])
            raise ValueError(f"render_mode must be None or one of {known}, got {render_mode!r}")
        self.render_mode = render_mode
        self._render_kwargs = {"render_mode": render_mode, "width": width, "height": height,
                               "camera_name": camera_name}
        self._upright = camera_name in ROTATED_CAMERAS
        self._task = self.benchmark.tasks["train"][0]
        self._inner: Any = self._metaworld_env(self._task)
        self.set_task(self._task)
        self.observation_space = _observation_space(self._inner.observation_space)
        self._action_map = ActionMap(_action_space(), action_space)
        self.action_space = self._action_map.space

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.benchmark.sample("train", n, rng)

    def sample_test_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.benchmark.sample("test", n, rng)

    def all_tasks(self) -> tuple[Task, ...]:
        """Every task of the benchmark (both splits): ``TaskObservation`` sizes its slots
        from them."""
        return self.benchmark.all_tasks()

    def _metaworld_env(self, task: Task) -> Any:
        cls = self.benchmark.classes[task["env_name"]]
        return cls(reward_function_version="v2", **self._render_kwargs)

    def set_task(self, task: Task) -> None:
        native = self.benchmark.metaworld_task(task)
        if task["env_name"] != self._task["env_name"]:
            self._inner.close()  # another task class (ML10): another Meta-World environment
            self._inner = self._metaworld_env(task)
        self._inner.set_task(native)
        self._task = task

    @property
    def task(self) -> Task:
        return self._task

    @property
    def mujoco_renderer(self) -> Any:
        """The Meta-World environment's renderer (for the GL context switching of
        ``metarl.rl.video``)."""
        return self._inner.mujoco_renderer

    @property
    def model(self) -> Any:
        """The Meta-World environment's ``MjModel`` (for ``metarl.rl.video``'s render settings)."""
        return self._inner.model

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        obs, _ = self._inner.reset()
        return np.asarray(obs, dtype=np.float64), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(self._action_map(checked_action(action, (ACT_DIM,))), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._inner.step(action)
        info = dict(info, success=bool(info["success"]))
        return (np.asarray(obs, dtype=np.float64), float(reward), bool(terminated),
                bool(truncated), info)

    def render(self) -> Any:
        frame = self._inner.render()
        if self._upright and isinstance(frame, np.ndarray):
            frame = np.ascontiguousarray(frame[::-1, ::-1])
        return frame

    def close(self) -> None:
        self._inner.close()


class _SubEnv:
    """One sub-environment: a Meta-World environment (maybe on a shared model) and its own copy
    of the model arrays that Meta-World's resets move, starting from the compiled values."""

    def __init__(self, env: Any, body_pos: np.ndarray, site_pos: np.ndarray) -> None:
        self.env = env
        self.body_pos = body_pos.copy()
        self.site_pos = site_pos.copy()

    @contextmanager
    def own_model(self) -> Iterator[Any]:
        model = self.env.model
        model.body_pos[:] = self.body_pos
        model.site_pos[:] = self.site_pos
        try:
            yield self.env
        finally:
            self.body_pos[:] = model.body_pos
            self.site_pos[:] = model.site_pos


def _on_shared_model(cls: type, model: Any) -> type:
    """A subclass of the Meta-World class ``cls`` whose instances simulate on ``model`` (with
    their own ``MjData``) instead of compiling the XML again."""
    import mujoco

    def initialize_simulation(self: Any) -> tuple[Any, Any]:
        return model, mujoco.MjData(model)

    return type(f"Shared{cls.__name__}", (cls,), {"_initialize_simulation": initialize_simulation})


class MetaWorldVectorEnv(TaskVectorEnv):
    """``num_envs`` Meta-World environments stepped in a loop, one task per sub-environment.

    Sub-environments are drawn from per-class pools that grow on demand (ML10 assigns a class
    per task), so switching tasks never recompiles a model once a pool is large enough.
    ``info["success"]`` of ``step`` is a bool array over sub-environments.
    """

    def __init__(self, num_envs: int, benchmark: str, env_name: str | None = None,
                 action_space: str = "env") -> None:
        super().__init__(num_envs)
        self.benchmark = load_benchmark(benchmark, env_name)
        self._pools: dict[str, list[_SubEnv]] = {}
        self._shared_classes: dict[str, type] = {}
        self._compiled: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # body_pos, site_pos
        self._slots: list[_SubEnv] = []
        self._last_obs = np.zeros((num_envs, OBS_DIM))
        self.set_tasks([self.benchmark.tasks["train"][0]] * num_envs)
        self.single_observation_space = _observation_space(self._slots[0].env.observation_space)
        self._action_map = ActionMap(_action_space(), action_space)
        self.single_action_space = self._action_map.space
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.benchmark.sample("train", n, rng)

    def sample_test_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        return self.benchmark.sample("test", n, rng)

    def all_tasks(self) -> tuple[Task, ...]:
        """Every task of the benchmark (both splits): ``TaskObservation`` sizes its slots
        from them."""
        return self.benchmark.all_tasks()

    def _new_sub_env(self, env_name: str) -> _SubEnv:
        cls = self.benchmark.classes[env_name]
        if env_name not in self._shared_classes:
            first = cls(reward_function_version="v2")  # compiles the model, once per class
            self._shared_classes[env_name] = _on_shared_model(cls, first.model)
            self._compiled[env_name] = (first.model.body_pos.copy(), first.model.site_pos.copy())
            return _SubEnv(first, *self._compiled[env_name])
        body_pos, site_pos = self._compiled[env_name]
        model = self._pools[env_name][0].env.model
        model.body_pos[:] = body_pos  # built as on a freshly compiled model
        model.site_pos[:] = site_pos
        env = self._shared_classes[env_name](reward_function_version="v2")
        return _SubEnv(env, body_pos, site_pos)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        check_task_count(tasks, self.num_envs)
        natives = [self.benchmark.metaworld_task(task) for task in tasks]
        used: dict[str, int] = {}
        slots = []
        for task, native in zip(tasks, natives):
            name = task["env_name"]
            pool = self._pools.setdefault(name, [])
            k = used.get(name, 0)
            used[name] = k + 1
            if k == len(pool):
                pool.append(self._new_sub_env(name))
            sub = pool[k]
            with sub.own_model() as env:
                env.set_task(native)
            slots.append(sub)
        self._slots = slots

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        # Meta-World's resets are deterministic given the task; the seed changes nothing.
        for i, sub in enumerate(self._slots):
            with sub.own_model() as env:
                self._last_obs[i] = env.reset()[0]
        return self._last_obs.copy(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.clip(self._action_map(checked_action(actions, (self.num_envs, ACT_DIM))),
                          -1.0, 1.0)
        rewards = np.zeros(self.num_envs)
        truncated = np.zeros(self.num_envs, dtype=bool)
        success = np.zeros(self.num_envs, dtype=bool)
        for i, sub in enumerate(self._slots):
            if sub.env.curr_path_length >= sub.env.max_path_length:
                truncated[i] = True  # past Meta-World's limit: it would raise; stay put
                continue
            with sub.own_model() as env:
                obs, reward, _, truncated[i], info = env.step(actions[i])
            self._last_obs[i] = obs
            rewards[i] = reward
            success[i] = bool(info["success"])
        terminated = np.zeros(self.num_envs, dtype=bool)
        return self._last_obs.copy(), rewards, terminated, truncated, {"success": success}

    def close_extras(self, **kwargs: Any) -> None:
        for pool in self._pools.values():
            for sub in pool:
                sub.env.close()
        self._pools.clear()
        self._slots = []
