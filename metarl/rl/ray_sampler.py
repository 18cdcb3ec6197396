"""Ray rollout backend (``sampler: ray``): a meta-batch's tasks sampled by Ray actors in parallel.

Sampling dominates a locomotion meta-iteration (about 85% of a HalfCheetahVel iteration on two
cores, docs/results/speed.md) and every task samples independently, so it is what spreads over
machines. Ray (Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI
Applications", OSDI) runs the actors on one machine or on a cluster and moves the results.

Each actor (a ``ShardSampler``) holds the batched simulator of its share of the meta-batch's
tasks, the policy and the inner loss. Per iteration the learner sends theta once and each actor
a contiguous shard of the tasks with their rollout seeds; the actor runs
``metarl.rl.sampling.sample_episodes`` -- the support rollouts, the sampling-time adaptation and the
query rollouts, the very function the local backend runs on the whole batch -- and returns its
tasks' Episodes and adapted parameters. The learner joins the shards in task order and computes
advantages and the meta-gradient as before.

Same episodes as the local backend: every rollout draws one seed per task from the learner's
dynamics stream, and a task's reset states and action noise depend on that seed only
(``metarl.rl.rollout``); MKL's strict reproducibility mode (set in ``metarl/__init__``) makes the
matrix products independent of where a task's slice sits in memory and of the thread count.
The tests check that runs with either backend end with bit-identical parameters.

Failures: an actor that dies (process killed, node lost) fails its shard with a
``RayActorError``; the actor is replaced by a fresh one and the shard is sent again, to an idle
live actor if there is one, else to the replacement. A shard is deterministic, so the retry
returns the same episodes and the iteration is not lost. An error raised by the sampling code
itself (a NaN, a bad value) is not retried -- it would happen again -- and reaches the learner
as the original exception. ``close`` (called by the trainer on every exit path, and at
interpreter exit as a backstop) kills the actors and stops a Ray that this module started.

Nothing else in metarl imports ray: the trainer imports this module only for ``sampler: ray``,
and this module imports ray only when a sampler is made.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch

from metarl.config import ConfigError, TrainConfig
from metarl.core.episodes import Episodes, pad_episodes
from metarl.core.linalg import Params
from metarl.envs import Task, TaskVectorEnv, make_task_vector_env
from metarl.rl.learners import build_learner
from metarl.rl.policy import build_policy
from metarl.rl.sampling import SampledEpisodes, sample_episodes
from metarl.run.watchdog import deadline

__all__ = ["RaySampler", "RayWorkerError", "ShardSampler", "shard_bounds"]

# Tries of one shard (the first and the retries) before the iteration fails.
MAX_SHARD_ATTEMPTS = 4
# Seconds the actors may take to start: a cluster with too few free CPUs never starts them.
ACTOR_START_TIMEOUT_S = 300.0
# Seconds to join a Ray cluster: ray.init retries an unreachable address without end.
RAY_CONNECT_TIMEOUT_S = 120.0
# CPUs (and so torch and simulator threads) of one actor.
CPUS_PER_WORKER = 1

INSTALL_HINT = 'sampler "ray" needs Ray, an optional extra: pip install -e ".[ray]"'


class RayWorkerError(ConnectionError):
    """Sampling on the Ray workers failed for good (workers lost again and again, or never
    started); a ``ConnectionError`` is an ``OSError``, which the CLI reports in one line."""


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def shard_bounds(tasks: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` task ranges, one per worker while there are tasks, sizes differing
    by at most one (the first ``tasks % workers`` shards take the extra task)."""
    count = min(tasks, workers)
    base, extra = divmod(tasks, count)
    bounds, lo = [], 0
    for k in range(count):
        hi = lo + base + (k < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def join_shards(parts: Sequence[SampledEpisodes]) -> SampledEpisodes:
    """The shards' episodes and adapted parameters joined along the task dimension, in order."""
    supports = [_join_episodes([p.supports[r] for p in parts])
                for r in range(len(parts[0].supports))]
    query = _join_episodes([p.query for p in parts])
    adapted = {k: torch.cat([p.adapted[k] for p in parts]) for k in parts[0].adapted}
    return SampledEpisodes(supports, query, adapted, [])


def _join_episodes(parts: list[Episodes]) -> Episodes:
    # batches counted in steps are as wide as their widest task: join at the widest shard's
    width = max(p.mask.shape[2] for p in parts)
    padded = [pad_episodes(p, width) for p in parts]
    # an optional field (Meta-World's success) is None in every shard or in none
    return Episodes._make(None if values[0] is None else torch.cat(list(values))
                          for values in zip(*padded))


class ShardSampler:
    """One Ray actor's state and work: the sampling of a shard of a meta-batch's tasks.

    A plain class (``ray.remote`` wraps it when the sampler starts), so it also runs in-process.
    It keeps one batched simulator per shard size it has seen (shards differ by one task, and a
    retried shard may come from another worker).
    """

    def __init__(self, config: TrainConfig, threads: int = CPUS_PER_WORKER) -> None:
        torch.set_num_threads(threads)
        self.config = config
        self.threads = threads
        self._envs: dict[int, TaskVectorEnv] = {}
        self.last_sample_s = 0.0  # seconds the last ``sample`` took here, without transfers
        probe = self._env(1)
        self.policy = build_policy(config, probe)
        self.learner = build_learner(config, self.policy)

    def ready(self) -> int:
        """The actor's process id, once it is constructed."""
        return os.getpid()

    def seconds_of_last_sample(self) -> float:
        return self.last_sample_s

    def sample(self, params: Params, tasks: Sequence[Task], seeds: Sequence[Sequence[int]]
               ) -> SampledEpisodes:
        """``sample_episodes`` on ``tasks`` (``seeds[r]``: one per task for rollout ``r``),
        without the support advantages, which the learner recomputes (half the transfer)."""
        start = time.perf_counter()
        env = self._env(len(tasks))
        sampled = sample_episodes(env, self.policy, self.learner, self.config, params, tasks,
                                  seeds)
        self.last_sample_s = time.perf_counter() - start
        return sampled._replace(support_batches=[])

    def _env(self, tasks: int) -> TaskVectorEnv:
        if tasks not in self._envs:
            c = self.config
            self._envs[tasks] = make_task_vector_env(c.env_id, tasks * c.episodes_per_task,
                                                     c.physics, threads=self.threads,
                                                     action_space=c.action_space)
        return self._envs[tasks]


class RaySampler:
    """``config.ray_workers`` Ray actors that sample a meta-batch's tasks in shards.

    Joins the Ray cluster at ``config.ray_address``, or starts a local Ray when it is "" (unless
    this process already runs one, which is then used and left running). ``worker`` is the
    actors' class (tests pass a subclass that misbehaves on request).
    """

    def __init__(self, config: TrainConfig, worker: type[ShardSampler] = ShardSampler) -> None:
        self._ray = import_ray()
        self.config = config
        self.retries = 0  # shards sent again after their actor was lost, over the run
        self._started_ray = False
        self._actors: list[Any] = []
        self._closed = False
        if not self._ray.is_initialized():
            self._init_ray()
        atexit.register(self.close)
        try:
            self._remote = self._ray.remote(num_cpus=CPUS_PER_WORKER, max_restarts=0)(worker)
            self._actors = [self._new_actor() for _ in range(config.ray_workers)]
            self._wait_until_ready()
        except BaseException:
            self.close()
            raise

    def _init_ray(self) -> None:
        """Start or join Ray, keeping this process's signal handlers (``ray.init`` replaces the
        SIGTERM handler with a plain exit, which would skip the trainer's checkpoint)."""
        main = threading.current_thread() is threading.main_thread()
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        address = self.config.ray_address or None
        # a local Ray gets at least a CPU per worker, or the surplus workers would never start
        cpus = None if address else max(os.cpu_count() or 1, self.config.ray_workers)
        unreachable = (f"could not reach the Ray cluster at ray_address {address!r} within "
                       f"{RAY_CONNECT_TIMEOUT_S:g} s; is `ray start --head` running there, and "
                       "is the address host:port (e.g. 10.0.0.5:6379)?")
        try:
            with deadline(RAY_CONNECT_TIMEOUT_S if address else 0.0, unreachable, grace_s=10.0):
                self._ray.init(address=address, num_cpus=cpus, include_dashboard=False,
                               log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = address or "a local Ray"
            raise RayWorkerError(f"cannot start or join Ray at {where}: "
                                 f"{' '.join(str(err).split())}") from None
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        self._started_ray = True

    def _new_actor(self) -> Any:
        # the learner's MKL setting, so every process multiplies matrices the same way
        env_vars = {"MKL_CBWR": os.environ.get("MKL_CBWR", "AUTO,STRICT")}
        return self._remote.options(runtime_env={"env_vars": env_vars}).remote(
            self.config, CPUS_PER_WORKER)

    def _wait_until_ready(self) -> None:
        refs = [actor.ready.remote() for actor in self._actors]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=ACTOR_START_TIMEOUT_S)
        if len(ready) < len(refs):
            raise RayWorkerError(
                f"only {len(ready)} of {len(refs)} Ray workers started within "
                f"{ACTOR_START_TIMEOUT_S:.0f} s; does the cluster have ray_workers "
                f"({len(refs)}) free CPUs?")
        self._ray.get(ready)  # raises a worker's construction error, e.g. a bad environment

    def sample(self, params: Params, tasks: Sequence[Task], seeds: Sequence[Sequence[int]]
               ) -> SampledEpisodes:
        """``sample_episodes`` for ``tasks`` on the workers, shard by shard, joined in order;
        the same result as the local call. Shards whose actor dies are retried."""
        if self._closed:
            raise RayWorkerError("the Ray sampler is closed")
        ray = self._ray
        exceptions = ray.exceptions
        theta = ray.put({k: v.detach().cpu() for k, v in params.items()})  # workers: CPU only
        shards = shard_bounds(len(tasks), len(self._actors))
        results: list[SampledEpisodes | None] = [None] * len(shards)
        attempts = [0] * len(shards)
        pending: dict[Any, tuple[int, int]] = {}  # result ref -> (shard, actor index)

        def submit(shard: int, actor: int) -> None:
            lo, hi = shards[shard]
            ref = self._actors[actor].sample.remote(theta, list(tasks[lo:hi]),
                                                    [list(s[lo:hi]) for s in seeds])
            pending[ref] = (shard, actor)
            attempts[shard] += 1

        for shard in range(len(shards)):
            submit(shard, shard)
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            shard, actor = pending.pop(done)
            try:
                results[shard] = ray.get(done)
            except exceptions.RayTaskError as err:  # the sampling code's own error
                raise _original(err) from None
            except (exceptions.RayActorError, exceptions.ObjectLostError) as err:
                if attempts[shard] >= MAX_SHARD_ATTEMPTS:
                    raise RayWorkerError(
                        f"tasks {shards[shard][0]}..{shards[shard][1] - 1} failed on "
                        f"{attempts[shard]} Ray workers in a row; last: "
                        f"{' '.join(str(err).split())[:300]}") from None
                self._replace(actor)
                busy = {a for _, a in pending.values()}
                idle = [a for a in range(len(self._actors)) if a not in busy and a != actor]
                self.retries += 1
                submit(shard, idle[0] if idle else actor)
        return join_shards([r for r in results if r is not None])

    def _replace(self, index: int) -> None:
        """A fresh actor in place of a lost one (the old handle is killed, in case it lives)."""
        with contextlib.suppress(Exception):  # already gone is the usual case
            self._ray.kill(self._actors[index], no_restart=True)
        self._actors[index] = self._new_actor()

    @property
    def actors(self) -> list[Any]:
        """The current actor handles (the tests kill one)."""
        return list(self._actors)

    def close(self) -> None:
        """Kill the actors and stop Ray if this sampler started it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for actor in self._actors:
            with contextlib.suppress(Exception):  # an actor already gone needs no killing
                self._ray.kill(actor, no_restart=True)
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()


def _original(err: Any) -> BaseException:
    """The exception a worker raised, rather than Ray's wrapper with the remote traceback."""
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, BaseException) else err
