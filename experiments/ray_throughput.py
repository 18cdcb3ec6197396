"""Sampling throughput of the Ray backend against the local batched backend, and a model of the
speed-up on more cores.

    python experiments/ray_throughput.py --out runs/ray_throughput.json

For each preset (default: navigation2d and halfcheetah_vel at their preset sizes, 20 tasks x 20
episodes x 100 steps and 40 x 20 x 100) it times the sampling of one meta-batch -- support
rollouts, the sampling-time inner step, query rollouts, exactly ``MetaLearner``'s sampling --
and reports environment steps per second, the median of ``--repeats`` timings after one
warm-up; the backends are timed in turns, one sampling each per round, so that other work on
the machine weighs on all of them alike:

- ``local_1_thread`` / ``local_2_threads``: the local backend (``metarl.rl.trainer.sample_episodes``
  on one batched simulator for all tasks), torch and simulator limited to 1 or 2 threads;
- ``ray_1_worker`` / ``ray_2_workers``: ``RaySampler`` with 1 or 2 actors of one CPU each on a
  local Ray (both pools up at once, so Ray counts 3 logical CPUs; only one pool works at a
  time), the learner waiting for them as in training.

It also measures what the model below needs:

- ``per_task_s``: one task's sampling cost on one core (the local 1-thread time / tasks);
- ``transfer_bytes``: the pickled size of what the workers return per iteration (Episodes and
  adapted parameters of every task), and of theta sent to each worker;
- ``learner_serial_s``: the learner's work that stays serial -- recomputing the support
  advantages, the query batch and the outer (TRPO) update -- timed on one thread;
- ``overhead_s``: Ray's own cost per iteration, the learner's wait minus the slowest worker's
  sampling time (measured inside the worker).

Model of an iteration on P worker cores, one task the smallest unit of work (Amdahl's law with
a granularity cap; assumptions stated in the JSON): ``T(P) = serial + ceil(N / P) * per_task +
transfer_bytes / bandwidth + overhead``, against ``T_local = serial + N * per_task`` on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.config import load_config
from metarl.core.maml import MetaBatch
from metarl.envs import make_task_vector_env
from metarl.rl.advantages import advantages_batch
from metarl.rl.learners import build_learner
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.policy import build_policy
from metarl.rl.ray_sampler import RaySampler, import_ray
from metarl.rl.rollout import draw_task_seeds
from metarl.rl.sampling import SampledEpisodes, sample_episodes

EXPERIMENTS = Path(__file__).resolve().parent
MODEL_CORES = (8, 32, 128)
# Assumed network bandwidth between workers and learner (10 Gbit/s Ethernet, about 1.1 GB/s
# of payload); on one machine the transfer goes through shared memory and is faster.
BANDWIDTH_BYTES_S = 1.1e9


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median seconds of ``repeats`` calls after one warm-up call; the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def env_steps(sampled: SampledEpisodes) -> int:
    return sum(e.num_steps for e in sampled.supports) + sampled.query.num_steps


def measure_preset(ray: Any, preset: str, repeats: int, workers: list[int],
                   log: Callable[[str], None]) -> dict[str, Any]:
    config = load_config(EXPERIMENTS / f"{preset}.yaml", {"torch_threads": "1"})
    n, b = config.meta_batch_size, config.episodes_per_task
    rng = np.random.default_rng(0)
    probe = make_task_vector_env(config.env_id, b, config.physics, threads=1,
                                 action_space=config.action_space)
    tasks = probe.sample_tasks(n, rng)
    torch.manual_seed(0)
    policy = build_policy(config, probe)
    sampling_learner = build_learner(config, policy)
    seeds = [draw_task_seeds(rng, n)
             for _ in range(sampling_learner.support_rollouts() + 1)]
    params = policy.initial_params()
    out: dict[str, Any] = {"preset": preset, "env_id": config.env_id, "tasks": n,
                           "episodes_per_task": b, "horizon": config.horizon,
                           "backends": {}}

    # every backend ready at once, then timed in turns, so that load from other work on the
    # machine falls on all of them alike
    backends: dict[str, Callable[[], SampledEpisodes]] = {}
    samplers: list[RaySampler] = []
    for threads in (1, 2):
        env = make_task_vector_env(config.env_id, n * b, config.physics, threads=threads,
                                   action_space=config.action_space)

        def local(env: Any = env, threads: int = threads) -> SampledEpisodes:
            torch.set_num_threads(threads)
            try:
                return sample_episodes(env, policy, sampling_learner, config, params, tasks,
                                       seeds)
            finally:
                torch.set_num_threads(1)

        backends[f"local_{threads}_thread{'s' if threads > 1 else ''}"] = local
    try:
        for count in workers:
            sampler = RaySampler(dataclasses.replace(config, sampler="ray", ray_workers=count))
            samplers.append(sampler)
            backends[f"ray_{count}_worker{'s' if count > 1 else ''}"] = (
                lambda sampler=sampler: sampler.sample(params, tasks, seeds))
        results = {key: run() for key, run in backends.items()}  # warm-up
        times: dict[str, list[float]] = {key: [] for key in backends}
        # Ray's own cost: the learner's wait minus the slowest worker's sampling time
        overheads: dict[str, list[float]] = {key: [] for key in backends if "ray" in key}
        for _ in range(repeats):
            for key, run in backends.items():
                start = time.perf_counter()
                results[key] = run()
                times[key].append(time.perf_counter() - start)
                if key in overheads:
                    sampler = samplers[list(overheads).index(key)]
                    busiest = max(ray.get([a.seconds_of_last_sample.remote()
                                           for a in sampler.actors]))
                    overheads[key].append(times[key][-1] - busiest)
    finally:
        for sampler in samplers:
            sampler.close()
    reference = results["local_1_thread"]
    steps = env_steps(reference)
    local_1 = statistics.median(times["local_1_thread"])
    for key, sampled in results.items():
        seconds = statistics.median(times[key])
        row: dict[str, Any] = {"seconds": seconds, "times": times[key], "env_steps": steps,
                               "env_steps_per_s": steps / seconds,
                               "same_episodes_as_local": all(
                                   torch.equal(u, v) for u, v in
                                   zip(_tensors(sampled), _tensors(reference)))}
        if key in overheads:
            row["overhead_s"] = statistics.median(overheads[key])
            row["overhead_times"] = overheads[key]
        out["backends"][key] = row
        log(f"{preset} {key}: {seconds:.3f} s, {steps / seconds:,.0f} steps/s, "
            f"same: {row['same_episodes_as_local']}")

    # what the workers return per iteration (every task's episodes and adapted parameters,
    # without the support advantages), pickled as Ray ships it
    returned = len(pickle.dumps(reference._replace(support_batches=[])))
    theta = len(pickle.dumps({k: v.detach() for k, v in params.items()}))
    out["transfer_bytes"] = {"episodes_and_adapted_per_iteration": returned,
                             "theta_per_worker": theta}

    # the learner's serial part: advantages of the returned supports, query batch, outer update
    learner = MetaLearner(config)
    state = learner.initial_state()
    sampled = reference

    def learner_side() -> Any:
        supports = [advantages_batch(e, config) for e in sampled.supports]
        batch = MetaBatch(supports, learner.query_batch(sampled.adapted, sampled.query))
        return learner.update(state, batch)

    serial, serial_times, _ = median_time(learner_side, repeats)
    out["learner_serial_s"] = serial
    out["learner_serial_times"] = serial_times
    out["per_task_s"] = local_1 / n
    log(f"{preset}: per task {local_1 / n:.4f} s, learner serial {serial:.3f} s, "
        f"returned {returned / 1e6:.2f} MB per iteration")
    out["model"] = speedup_model(out)
    return out


def _tensors(sampled: SampledEpisodes) -> list[torch.Tensor]:
    episodes = [*sampled.supports, sampled.query]
    return ([t for e in episodes for t in e if isinstance(t, torch.Tensor)]
            + [sampled.adapted[k] for k in sorted(sampled.adapted)])


def speedup_model(measured: dict[str, Any]) -> dict[str, Any]:
    """Expected seconds per iteration and speed-up over one core with P worker cores."""
    n = measured["tasks"]
    per_task = measured["per_task_s"]
    serial = measured["learner_serial_s"]
    transfer = measured["transfer_bytes"]
    ray_runs = [v for k, v in measured["backends"].items() if k.startswith("ray_")]
    overhead = max(v["overhead_s"] for v in ray_runs) if ray_runs else 0.0
    local = serial + n * per_task
    rows = []
    for cores in MODEL_CORES:
        sampling = math.ceil(n / cores) * per_task
        moved = (transfer["episodes_and_adapted_per_iteration"]
                 + cores * transfer["theta_per_worker"]) / BANDWIDTH_BYTES_S
        total = serial + sampling + moved + overhead
        rows.append({"cores": cores, "seconds_per_iteration": total,
                     "speedup_over_one_core": local / total,
                     "sampling_s": sampling, "transfer_s": moved,
                     "busy_cores": min(cores, n)})
    return {
        "local_one_core_seconds_per_iteration": local,
        "ray_overhead_s": overhead,
        "limit_speedup_infinite_cores": local / (serial + per_task + overhead),
        "rows": rows,
        "assumptions": [
            "one worker per core, each sampling whole tasks; a task is the smallest unit, so "
            "beyond N cores (N tasks per meta-batch) extra cores idle",
            "per-task sampling cost as measured here on one core, the same on every core",
            "the learner's serial part (support advantages, query batch, outer TRPO step) as "
            "measured here on one thread; it does not overlap with sampling",
            f"transfer at {BANDWIDTH_BYTES_S / 1e9:.1f} GB/s (10 Gbit/s network) of the "
            "measured pickled bytes; theta sent to every worker",
            "a fixed Ray overhead per iteration (scheduling, moving and (de)serialising "
            "theta and the episodes on one machine): the largest measured median of the "
            "learner's wait minus the slowest worker's own sampling time",
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--presets", nargs="+", default=["navigation2d", "halfcheetah_vel"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    torch.set_num_threads(1)
    ray = import_ray()
    # logical CPUs: the pools of every worker count stay up together, idle but for their turn
    ray.init(num_cpus=max(args.ray_cpus, sum(args.workers)), include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        presets = [measure_preset(ray, p, args.repeats, args.workers, log)
                   for p in args.presets]
    finally:
        ray.shutdown()
    result = {
        "machine": {"cpus": len(os.sched_getaffinity(0)),
                    # other work on the machine: 1-minute load averages at start and end
                    "load_average_start_end": [load_before[0], os.getloadavg()[0]],
                    "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "ray": ray.__version__},
        "repeats": args.repeats,
        "minutes": (time.perf_counter() - started) / 60,
        "presets": presets,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
