"""The trainer's path (``MetaLearner.meta_gradient``) for iMAML and Reptile against independent
float64 computations on a real sampled batch: a 2-4-2 tanh Gaussian policy on 2D navigation, so
every loss is non-quadratic.

The reference here is written from the formulas, not from metarl's code: its own policy
log-density on a flat parameter vector, the proximal problem
``min_phi L_i(phi) + lambda/2 |phi - theta|^2`` solved by Newton's method to machine precision,
the explicit Hessian ``H_i`` of the support loss at ``phi_i`` (``torch.autograd.functional``),
and the iMAML gradient ``mean_i ((1 + d) I + H_i / lambda)^-1 grad Q_i(phi_i)`` by a dense solve
(Rajeswaran et al. 2019, arXiv:1909.04630, Lemma 1, with the damping d of ``prox_damping``).
The tests check that ``prox_damping``, ``imaml_cg_iters`` and ``meta_grad_chunk`` reach the
solvers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.autograd.functional import hessian

import metarl.rl.learners.imaml as imaml_learner
from metarl.config import TrainConfig
from metarl.core.maml import MetaBatch
from metarl.core.policy_proximal import floored_surrogate_loss
from metarl.rl.meta_learner import MetaLearner

TASKS, HIDDEN, LAMBDA = 3, 4, 4.0
FLOOR = math.log(0.1)  # policy_proximal's ratio floor, from its docstring's formula


def _double(tree: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda x: x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x,
        tree)


def _sampled(config: TrainConfig) -> tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch]:
    """A learner, its theta in float64 and one meta-batch it sampled, in float64."""
    learner = MetaLearner(config)
    theta = learner.initial_state().params
    batch, _ = learner.sample(theta)
    return learner, _double(theta), _double(batch)


def _config(**fields: Any) -> TrainConfig:
    base: dict[str, Any] = dict(meta_batch_size=TASKS, episodes_per_task=2, horizon=10,
                                hidden_sizes=[HIDDEN], torch_threads=1, outer="adam", seed=3,
                                learner="imaml", prox_lambda=LAMBDA, inner_lr=0.05,
                                inner_steps=300, imaml_cg_iters=60, meta_grad_chunk=0)
    base.update(fields)
    return TrainConfig(**base)


# --- the reference, on flat parameter vectors -------------------------------------------------

def _unflat(w: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, ref in like.items():
        out[name] = w[offset:offset + ref.numel()].reshape(ref.shape)
        offset += ref.numel()
    return out


def _log_prob(w: torch.Tensor, like: dict[str, torch.Tensor], obs: torch.Tensor,
              actions: torch.Tensor) -> torch.Tensor:
    """log N(a; W1 tanh(W0 s + b0) + b1, diag(exp(log_std))^2), per step."""
    p = _unflat(w, like)
    hidden = torch.tanh(obs @ p["layers.0.weight"].T + p["layers.0.bias"])
    mean = hidden @ p["layers.1.weight"].T + p["layers.1.bias"]
    log_std = p["log_std"]
    z = (actions - mean) / torch.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def _weighted_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _support_loss(w: torch.Tensor, theta: torch.Tensor, like: dict[str, torch.Tensor],
                  steps: Any) -> torch.Tensor:
    """-mean_t A_t * (log pi_w, floored at log pi_theta + log 0.1 where A_t < 0)."""
    log_prob = _log_prob(w, like, steps.observations, steps.actions)
    anchor = _log_prob(theta, like, steps.observations, steps.actions).detach()
    used = torch.where(steps.advantages < 0, torch.maximum(log_prob, anchor + FLOOR), log_prob)
    return -_weighted_mean(used * steps.advantages, steps.mask)


def _query_loss(w: torch.Tensor, like: dict[str, torch.Tensor], query: Any) -> torch.Tensor:
    """-mean_t exp(log pi_w - log pi_old) A_t."""
    steps = query.steps
    ratio = torch.exp(_log_prob(w, like, steps.observations, steps.actions) - query.old_log_prob)
    return -_weighted_mean(ratio * steps.advantages, steps.mask)


def _task(batch: Any, i: int) -> Any:
    return torch.utils._pytree.tree_map(lambda x: x[i], batch)


class Reference:
    """Per task: phi_i, the query gradient g_i there and A_i(d) = (1 + d) I + H_i / lambda."""

    def __init__(self, theta: dict[str, torch.Tensor], batch: MetaBatch) -> None:
        self.like = theta
        flat = torch.cat([v.reshape(-1) for v in theta.values()])
        self.phi, self.g, self.hessians, self.query_losses = [], [], [], []
        eye = torch.eye(flat.numel(), dtype=torch.float64)
        for i in range(TASKS):
            support, query = _task(batch.supports[0], i), _task(batch.query, i)

            def proximal(w: torch.Tensor, support: Any = support) -> torch.Tensor:
                return (_support_loss(w, flat, theta, support)
                        + 0.5 * LAMBDA * (w - flat).square().sum())

            w = flat.clone()
            for _ in range(50):  # Newton's method on the proximal objective
                grad = torch.func.grad(proximal)(w)
                if grad.norm() < 1e-13:
                    break
                w = w - torch.linalg.solve(hessian(proximal, w), grad)
            assert torch.func.grad(proximal)(w).norm() < 1e-12, "Newton did not converge"
            steps = support
            log_prob = _log_prob(w, theta, steps.observations, steps.actions)
            anchor = _log_prob(flat, theta, steps.observations, steps.actions)
            assert bool((log_prob > anchor + FLOOR + 0.1).all()), "a floor is active at phi"
            h = hessian(lambda v, s=support: _support_loss(v, flat, theta, s), w)
            assert float(torch.linalg.eigvalsh(eye + h / LAMBDA).min()) > 0.1
            self.phi.append(w)
            self.hessians.append(h)
            self.g.append(torch.func.grad(lambda v, q=query: _query_loss(v, theta, q))(w))
            self.query_losses.append(_query_loss(w, theta, query))
        self.eye = eye

    def system(self, i: int, damping: float) -> torch.Tensor:
        return (1 + damping) * self.eye + self.hessians[i] / LAMBDA

    def gradient(self, damping: float) -> torch.Tensor:
        """mean_i ((1 + d) I + H_i / lambda)^-1 g_i, solved exactly."""
        return torch.stack([torch.linalg.solve(self.system(i, damping), self.g[i])
                            for i in range(TASKS)]).mean(0)

    def one_cg_step(self, damping: float) -> torch.Tensor:
        """mean_i of CG's first iterate from 0: (g^T g / g^T A g) g."""
        return torch.stack([(g @ g) / (g @ self.system(i, damping) @ g) * g
                            for i, g in enumerate(self.g)]).mean(0)

    def smallest_eigenvalue(self, damping: float) -> float:
        return min(float(torch.linalg.eigvalsh(self.system(i, damping)).min())
                   for i in range(TASKS))


@pytest.fixture(scope="module")
def imaml_case() -> tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch, Reference]:
    learner, theta, batch = _sampled(_config())
    return learner, theta, batch, Reference(theta, batch)


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in grads.values()])


def _with(learner: MetaLearner, **fields: Any) -> MetaLearner:
    """A learner of the same seed (so the same policy and losses) under changed config
    fields."""
    return MetaLearner(_config(**fields))


@pytest.mark.parametrize("damping", [0.25, 2.0])
def test_imaml_meta_gradient_is_the_damped_implicit_gradient(
        imaml_case: tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch, Reference],
        damping: float) -> None:
    learner, theta, batch, ref = imaml_case
    loss, grads, info = _with(learner, prox_damping=damping).meta_gradient(theta, batch)
    assert list(grads) == list(theta)
    assert info["inner/grad_norm_max"] < 1e-10  # the trainer's inner solve converged
    assert info["outer/cg_residual_max"] < 1e-5
    # CG stops at |r|^2 <= 1e-10: its answer is within |r| / lambda_min(A) of the exact solve
    bound = info["outer/cg_residual_max"] / ref.smallest_eigenvalue(damping) + 1e-9
    expected = ref.gradient(damping)
    assert (_flat(grads) - expected).abs().max() <= bound
    assert torch.allclose(loss, torch.stack(ref.query_losses).mean(), atol=1e-10, rtol=0)
    # the damping matters far beyond that tolerance: another d gives another answer
    other = ref.gradient(0.25 if damping == 2.0 else 2.0)
    assert (expected - other).abs().max() > 100 * bound


def test_imaml_cg_iterations_come_from_imaml_cg_iters(
        imaml_case: tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch, Reference]) -> None:
    learner, theta, batch, ref = imaml_case
    _, grads, info = _with(learner, imaml_cg_iters=1, cg_iters=60,
                           prox_damping=0.5).meta_gradient(theta, batch)
    assert info["outer/cg_iterations"] == 1
    one_step = ref.one_cg_step(0.5)
    assert torch.allclose(_flat(grads), one_step, atol=1e-10, rtol=1e-9)
    assert (one_step - ref.gradient(0.5)).abs().max() > 1e-3  # one step is not converged


def test_imaml_meta_grad_chunk_reaches_the_solver(
        imaml_case: tuple[MetaLearner, dict[str, torch.Tensor], MetaBatch, Reference],
        monkeypatch: pytest.MonkeyPatch) -> None:
    learner, theta, batch, ref = imaml_case
    seen: list[int] = []

    def counting(policy: Any) -> Any:
        loss = floored_surrogate_loss(policy)

        def recorded(params: Any, data: Any) -> torch.Tensor:
            seen.append(data.steps.observations.shape[0])
            return loss(params, data)

        return recorded

    monkeypatch.setattr(imaml_learner, "floored_surrogate_loss", counting)
    loss, grads, info = _with(learner, meta_grad_chunk=2).meta_gradient(theta, batch)
    assert seen and max(seen) == 2 and min(seen) == 1  # chunks of 2 and 1 tasks
    bound = info["outer/cg_residual_max"] / ref.smallest_eigenvalue(1.0) + 1e-9
    assert (_flat(grads) - ref.gradient(1.0)).abs().max() <= bound
    assert torch.allclose(loss, torch.stack(ref.query_losses).mean(), atol=1e-10, rtol=0)


def test_reptile_meta_grad_chunk_reaches_the_inner_loops() -> None:
    """Two SGD steps per task, step s on support s with the MAML-RL surrogate
    -mean_t log pi(a_t|s_t) A_t: the direction is mean_i (theta - phi_i), in chunks of 2."""
    config = _config(learner="reptile", inner_steps=2, inner_lr=0.1, meta_grad_chunk=2)
    learner, theta, batch = _sampled(config)
    seen: list[int] = []
    inner = learner.inner_loss

    def counting(params: Any, data: Any) -> torch.Tensor:
        seen.append(data.observations.shape[0])
        return inner(params, data)

    learner.objective.inner_loss = counting
    loss, direction, _ = learner.meta_gradient(theta, batch)
    assert seen and max(seen) == 2 and min(seen) == 1

    flat = torch.cat([v.reshape(-1) for v in theta.values()])

    def surrogate(w: torch.Tensor, steps: Any) -> torch.Tensor:
        log_prob = _log_prob(w, theta, steps.observations, steps.actions)
        return -_weighted_mean(log_prob * steps.advantages, steps.mask)

    moved, losses = [], []
    for i in range(TASKS):
        w = flat
        for support in batch.supports:
            w = w - 0.1 * torch.func.grad(surrogate)(w, _task(support, i))
        moved.append(flat - w)
        losses.append(surrogate(w, _task(batch.supports[-1], i)))
    assert torch.allclose(_flat(direction), torch.stack(moved).mean(0), atol=1e-12, rtol=0)
    assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-12, rtol=0)
