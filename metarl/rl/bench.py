"""Speed benchmark of meta-training: seconds per iteration split into sampling and meta-update,
peak memory, and the config's learner's meta-gradient on one batch: for MAML and FOMAML (with
its first-order gradient) each of the three ways of batching tasks; for Reptile, iMAML and the
pretrained baseline the learner's own update direction, as training computes it.

Prints figures; it asserts nothing (timings on shared machines are noisy: quote medians).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from metarl.config import TrainConfig, resolve_threads
from metarl.core.linalg import Params
from metarl.core.maml import GradientMode, MetaBatch, meta_gradient
from metarl.envs.base import usable_cores
from metarl.rl.device import cpu_has_bfloat16_arithmetic
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.throughput import physics_limit
from metarl.run.resources import peak_rss_mb


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":  # CUDA runs asynchronously: time the work, not its launch
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_bench(config: TrainConfig, iterations: int = 5, repeats: int = 3) -> dict[str, Any]:
    """Time ``repeats`` blocks of ``iterations`` meta-iterations after two warm-up iterations.

    ``peak_memory_mb`` is the process's peak resident memory during training iterations; the
    meta-gradient timing that follows (``meta_gradient_seconds``: the config's learner's
    meta-gradient on one batch, see ``gradient_variants``; for MAML and FOMAML by each way of
    batching tasks, with their ratios to all tasks at once) runs afterwards and is not included
    in it. For MuJoCo families, ``physics_floor_seconds`` is the time bare ``mj_step`` calls
    take for the iteration's environment steps on the usable cores, and
    ``sampling_over_physics_floor`` the sampling time's ratio to it.
    """
    if iterations < 1 or repeats < 1:
        raise ValueError("--iterations and --repeats must be >= 1")
    threads = resolve_threads(config.torch_threads)
    torch.set_num_threads(threads)
    with MetaLearner(config) as learner:  # closes Ray workers and simulator threads
        state = learner.initial_state()
        for _ in range(2):
            state, _ = learner.iteration(state)
        per_iteration, sampling, update = [], [], []
        for _ in range(repeats * iterations):
            state, metrics = learner.iteration(state)
            per_iteration.append(metrics["time/iteration_s"])
            sampling.append(metrics["time/rollout_s"])
            update.append(metrics["time/update_s"])
        steps_per_iteration = state.env_steps / state.iteration
        training_peak_mb = peak_rss_mb()  # before the timing below, which builds bigger graphs

        batch, _ = learner.sample(state.params)
        gradients = gradient_variants(learner, state.params, batch)
        modes = {name: _median_seconds(gradient, repeats, learner.device)
                 for name, gradient in gradients.items()}
        device = str(learner.device)
    result = {
        "env_id": config.env_id,
        "meta_batch_size": config.meta_batch_size,
        "episodes_per_task": config.episodes_per_task,
        "horizon": config.horizon,
        "inner_steps": config.inner_steps,
        "outer": config.outer,
        "learner": config.learner,
        "first_order": config.first_order_meta_gradient,
        "curvature_dtype": config.curvature_dtype,
        # whether this CPU has bfloat16 instructions, where curvature_dtype bfloat16 pays off
        "cpu_bfloat16": cpu_has_bfloat16_arithmetic(),
        "torch_threads": threads,
        "device": device,
        "iterations_timed": len(per_iteration),
        "seconds_per_iteration_median": statistics.median(per_iteration),
        "sampling_seconds_median": statistics.median(sampling),
        "meta_update_seconds_median": statistics.median(update),
        "meta_update_fraction": statistics.median(u / i for u, i in zip(update, per_iteration)),
        "env_steps_per_iteration": steps_per_iteration,
        "peak_memory_mb": training_peak_mb,
        "meta_gradient_seconds": modes,
        **({"meta_gradient_ratio_to_batched_all": {
            k: v / modes["batched_all"] for k, v in modes.items()
        }} if "batched_all" in modes else {}),
    }
    # MuJoCo: how close sampling comes to the physics alone, bare mj_step calls for the steps
    # simulated (finished episodes are not), over the cores
    limit = physics_limit(config.env_id, config.physics, usable_cores())
    if limit:
        floor = steps_per_iteration / limit
        result["physics_floor_seconds"] = floor
        result["sampling_over_physics_floor"] = statistics.median(sampling) / floor
    return result


def gradient_variants(learner: MetaLearner, params: Params, batch: MetaBatch
                      ) -> dict[str, Callable[[], object]]:
    """The meta-gradient computations ``run_bench`` times on ``batch``, by name.

    For learners "maml" and "fomaml": MAML's meta-gradient (first-order where the config asks
    for it, as training does) by each way of batching tasks: ``meta_grad_chunk`` tasks at a
    time and all at once, ``torch.func.vmap`` in chunks, and a loop. Every other learner has
    one way, its own: ``MetaLearner.meta_gradient`` (Reptile's direction, iMAML's implicit
    gradient, the pretrained baseline's policy gradient), named after the learner.
    """
    config = learner.config
    if config.learner not in ("maml", "fomaml"):
        return {config.learner: functools.partial(learner.meta_gradient, params, batch)}
    chunk = config.meta_grad_chunk
    variants: tuple[tuple[str, GradientMode, int | None], ...] = (
        (f"batched_chunk{chunk}", "batched", chunk), ("batched_all", "batched", None),
        (f"vmap_chunk{chunk}", "vmap", chunk), ("loop", "loop", None),
    )
    return {
        name: functools.partial(
            meta_gradient, learner.inner_loss, learner.outer_loss, params, batch.supports,
            batch.query, config.inner_lr, config.first_order_meta_gradient, mode=mode,
            chunk_size=size,
        )
        for name, mode, size in variants
    }
