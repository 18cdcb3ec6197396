"""The trainer's wiring against independent float64 computations.

Each test feeds the trainer (``MetaLearner`` and its batch path) a tiny fixed batch and compares
what it computes with the same quantity written here from the formulas, task by task with plain
autograd: a two-layer tanh Gaussian policy, the inner policy-gradient step, the surrogate, the
KL, GAE and the linear baseline. The functions under test are correct on their own (their maths
is tested elsewhere); these tests fail when the trainer hands them the wrong argument.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from metarl.config import TrainConfig
from metarl.core.episodes import Episodes, StepBatch, to_step_batch
from metarl.core.maml import MetaBatch, QueryBatch
from metarl.rl.advantages import advantages_batch
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.train_state import TrainState

Theta = dict[str, Tensor]
NAMES = ("layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "log_std")
HIDDEN = 3
OBS = ACT = 2  # 2D navigation's sizes, the environment the learner is built on


# --- the reference maths, one task at a time ---------------------------------------------------

def ref_distribution(theta: Theta, obs: Tensor) -> tuple[Tensor, Tensor]:
    """mean = W1 tanh(W0 s + b0) + b1 and the state-independent log-std."""
    hidden = torch.tanh(obs @ theta["layers.0.weight"].T + theta["layers.0.bias"])
    return hidden @ theta["layers.1.weight"].T + theta["layers.1.bias"], theta["log_std"]


def ref_log_prob(theta: Theta, obs: Tensor, actions: Tensor) -> Tensor:
    mean, log_std = ref_distribution(theta, obs)
    var = torch.exp(2 * log_std)
    per_dim = -(actions - mean) ** 2 / (2 * var) - log_std - 0.5 * math.log(2 * math.pi)
    return per_dim.sum(-1)


def ref_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(p || q) of diagonal Gaussians per step."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    per_dim = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return per_dim.sum(-1)


def weighted_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum()


def ref_inner_loss(theta: Theta, obs: Tensor, actions: Tensor, adv: Tensor, mask: Tensor
                   ) -> Tensor:
    """The original MAML-RL surrogate -mean_t log pi(a_t | s_t) A_t of one task."""
    return -weighted_mean(ref_log_prob(theta, obs, actions) * adv, mask)


def ref_adapt(theta: Theta, support: StepBatch, task: int, lr: float, first_order: bool
              ) -> Theta:
    """phi = theta - lr grad L_support(theta); with first_order the gradient is a constant."""
    loss = ref_inner_loss(theta, support.observations[task], support.actions[task],
                          support.advantages[task], support.mask[task])
    grads = torch.autograd.grad(loss, [theta[k] for k in NAMES], create_graph=not first_order)
    return {k: theta[k] - lr * g for k, g in zip(NAMES, grads)}


def ref_task_terms(theta: Theta, batch: MetaBatch, task: int, lr: float, first_order: bool,
                   query_steps: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Query surrogate -mean_t ratio_t A_t and mean KL(old || phi) of one adapted task, on all
    query steps or on ``query_steps``."""
    phi = ref_adapt(theta, batch.supports[0], task, lr, first_order)
    q = batch.query
    index = torch.arange(q.steps.mask.shape[-1]) if query_steps is None else query_steps
    obs, actions = q.steps.observations[task, index], q.steps.actions[task, index]
    mask, adv = q.steps.mask[task, index], q.steps.advantages[task, index]
    ratio = torch.exp(ref_log_prob(phi, obs, actions) - q.old_log_prob[task, index])
    mean, log_std = ref_distribution(phi, obs)
    kl = ref_kl(q.old_dist[0][task, index], q.old_dist[1][task, 0], mean, log_std)
    return -weighted_mean(ratio * adv, mask), weighted_mean(kl, mask)


def flat(theta: Theta) -> Tensor:
    return torch.cat([theta[k].reshape(-1) for k in NAMES])


def unflat(vector: Tensor, like: Theta) -> Theta:
    out, offset = {}, 0
    for k in NAMES:
        out[k] = vector[offset: offset + like[k].numel()].view_as(like[k])
        offset += like[k].numel()
    return out


def ref_meta_loss_and_kl(vector: Tensor, like: Theta, batch: MetaBatch, lr: float,
                         first_order: bool, query_steps: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    theta = unflat(vector, like)
    n = batch.query.old_log_prob.shape[0]
    terms = [ref_task_terms(theta, batch, i, lr, first_order, query_steps) for i in range(n)]
    return (torch.stack([t[0] for t in terms]).mean(), torch.stack([t[1] for t in terms]).mean())


# --- a tiny fixed problem ----------------------------------------------------------------------

def tiny_config(**fields: object) -> TrainConfig:
    base: dict[str, object] = dict(meta_batch_size=2, episodes_per_task=3, horizon=4,
                                   hidden_sizes=[HIDDEN], inner_lr=0.5, torch_threads=1)
    base.update(fields)
    return TrainConfig(**base)  # type: ignore[arg-type]


def tiny_theta(seed: int = 0) -> Theta:
    g = torch.Generator().manual_seed(seed)
    shapes = {"layers.0.weight": (HIDDEN, OBS), "layers.0.bias": (HIDDEN,),
              "layers.1.weight": (ACT, HIDDEN), "layers.1.bias": (ACT,), "log_std": (ACT,)}
    return {k: 0.7 * torch.randn(*shapes[k], generator=g, dtype=torch.float64) for k in NAMES}


def tiny_batch(theta: Theta, tasks: int = 2, steps: int = 12, lr: float = 0.5,
               seed: int = 1) -> MetaBatch:
    """Random support and query steps, the query's old distribution that of the adapted policy
    at ``theta`` (as when the query was sampled), a few steps masked out."""
    g = torch.Generator().manual_seed(seed)

    def random_steps() -> StepBatch:
        mask = torch.ones(tasks, steps, dtype=torch.float64)
        mask[:, -2:] = 0.0
        return StepBatch(torch.randn(tasks, steps, OBS, generator=g, dtype=torch.float64),
                         torch.randn(tasks, steps, ACT, generator=g, dtype=torch.float64),
                         torch.randn(tasks, steps, generator=g, dtype=torch.float64), mask)

    support, query = random_steps(), random_steps()
    means, log_stds, log_probs = [], [], []
    for i in range(tasks):
        leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        phi = {k: v.detach() for k, v in ref_adapt(leaves, support, i, lr, True).items()}
        means.append(ref_distribution(phi, query.observations[i])[0])
        log_stds.append(phi["log_std"].unsqueeze(0))
        log_probs.append(ref_log_prob(phi, query.observations[i], query.actions[i]))
    old = QueryBatch(query, (torch.stack(means), torch.stack(log_stds)),
                     torch.stack(log_probs))
    return MetaBatch([support], old)


# --- the tests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("learner,first_order", [("maml", False), ("fomaml", True)])
def test_meta_gradient_has_the_learners_order(learner: str, first_order: bool) -> None:
    """``learner: fomaml`` drops the second-order terms even with ``first_order: false``;
    ``maml`` keeps them. (Planted: the trainer passing ``c.first_order`` instead.)"""
    config = tiny_config(learner=learner)
    theta = tiny_theta()
    batch = tiny_batch(theta)
    with MetaLearner(config) as meta:
        loss, grads, _ = meta.meta_gradient(theta, batch)
    vector = flat(theta).requires_grad_(True)
    expected = {}
    for order in (False, True):
        ref_loss, _ = ref_meta_loss_and_kl(vector, theta, batch, 0.5, order)
        expected[order] = torch.autograd.grad(ref_loss, vector)[0]
    assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-12)
    assert torch.allclose(flat(grads), expected[first_order], atol=1e-10)
    # the two orders differ here, so the comparison above can tell them apart
    assert (expected[True] - expected[False]).norm() > 1e-2 * expected[False].norm()


def ref_pre_update_kl(vector: Tensor, theta: Theta, support: StepBatch, steps: Tensor
                      ) -> Tensor:
    """Mean over tasks of KL(pi_theta || pi_vector) on the support states ``steps``."""
    params = unflat(vector, theta)
    kls = []
    for i in range(support.mask.shape[0]):
        obs = support.observations[i, steps]
        old_mean, old_log_std = (x.detach() for x in ref_distribution(theta, obs))
        mean, log_std = ref_distribution(params, obs)
        kls.append(weighted_mean(ref_kl(old_mean, old_log_std, mean, log_std),
                                 support.mask[i, steps]))
    return torch.stack(kls).mean()


def reference_trpo_step(theta: Theta, batch: MetaBatch, config: TrainConfig,
                        query_steps: Tensor, support_steps: Tensor
                        ) -> tuple[Tensor, int, float]:
    """TRPO from its definition (Schulman et al. 2015, Appendix C): x = -(F + d I)^-1 g with F
    the Hessian of the mean KL on ``query_steps`` through the adaptation on all support steps
    (plus, with ``trpo_pre_update_kl``, the Hessian of the pre-update policy's KL on
    ``support_steps``); the step scaled to 0.5 s^T (F + d I) s = max_kl; the first backtracked
    step that lowers the loss with the KL (the sum of both) within max_kl. Returns the new
    parameters, how many steps were tried and the trust region's KL there."""
    first_order = config.learner == "fomaml"
    lr = config.inner_lr
    support = batch.supports[0]
    everything = torch.arange(support.mask.shape[-1])
    vector = flat(theta).requires_grad_(True)
    loss, _ = ref_meta_loss_and_kl(vector, theta, batch, lr, first_order)
    g = torch.autograd.grad(loss, vector)[0]

    def trust_region_kl(v: Tensor, query: Tensor | None, supports: Tensor) -> Tensor:
        kl = ref_meta_loss_and_kl(v, theta, batch, lr, first_order, query)[1]
        if config.trpo_pre_update_kl:
            kl = kl + ref_pre_update_kl(v, theta, support, supports)
        return kl

    fisher = torch.autograd.functional.hessian(
        lambda v: trust_region_kl(v, query_steps, support_steps), flat(theta))
    fisher = fisher + config.cg_damping * torch.eye(fisher.shape[0], dtype=fisher.dtype)
    x = torch.linalg.solve(fisher, -g)
    step = x * torch.sqrt(config.max_kl / (0.5 * x @ fisher @ x))
    loss_before = loss.item()
    for k in range(config.ls_max_steps):
        candidate = (flat(theta) + config.ls_backtrack**k * step).detach().requires_grad_(True)
        new_loss, _ = ref_meta_loss_and_kl(candidate, theta, batch, lr, first_order)
        kl = trust_region_kl(candidate, None, everything).item()
        if new_loss.item() < loss_before and kl <= config.max_kl:
            return candidate.detach(), k + 1, kl
    return flat(theta), config.ls_max_steps, 0.0


@pytest.mark.parametrize("learner,pre_update_kl", [("maml", False), ("fomaml", False),
                                                   ("maml", True)])
@pytest.mark.parametrize("fvp_fraction", [1.0, 0.5])
def test_trpo_update_equals_the_step_from_its_definition(learner: str, pre_update_kl: bool,
                                                         fvp_fraction: float) -> None:
    """The trainer's whole TRPO update: gradient, curvature (the exact KL Hessian on the query
    subsample, adapted on all supports; with ``trpo_pre_update_kl`` plus the pre-update KL's),
    damping, step size, line search. (Planted: supports subsampled too; the FVP's first_order
    flag from ``c.first_order``; no damping; the pre-update term left out of the line search.)"""
    config = tiny_config(learner=learner, fvp_fraction=fvp_fraction, max_kl=0.02,
                         cg_iters=60, cg_damping=0.05, inner_lr=0.1,
                         trpo_pre_update_kl=pre_update_kl)
    theta = tiny_theta()
    batch = tiny_batch(theta, lr=0.1)
    with MetaLearner(config) as meta:
        # the steps the curvature uses, drawn as the learner will draw them: query, then support
        generator = torch.Generator()
        generator.set_state(meta.generator.get_state())
        draws = [torch.randperm(m, generator=generator)[:max(1, math.ceil(fvp_fraction * m))]
                 .sort().values if fvp_fraction < 1 else torch.arange(m)
                 for m in (batch.query.steps.mask.shape[-1], batch.supports[0].mask.shape[-1])]
        state = TrainState(theta, None, 0, 0, float("-inf"))
        new, metrics = meta.update(state, batch)
    expected, tried, kl = reference_trpo_step(theta, batch, config, *draws)
    assert metrics["outer/accepted"] == 1.0 and metrics["outer/ls_steps"] == tried
    assert metrics["outer/trust_region_kl"] == pytest.approx(kl, rel=1e-4)
    assert 0.0 < metrics["outer/kl"] <= metrics["outer/trust_region_kl"] <= config.max_kl
    # conjugate gradient stops at a residual of 1e-5, the reference solves exactly
    assert torch.allclose(flat(new.params), expected, rtol=0.0, atol=2e-5)
    assert (expected - flat(theta)).norm() > 1e-3


def test_query_old_distribution_is_the_adapted_policys() -> None:
    """The query batch's old log-probabilities and means come from the adapted parameters that
    sampled it, not from theta. (Planted: ``_query_batch(params, ...)``.)"""
    config = tiny_config(inner_lr=0.5)
    with MetaLearner(config) as meta:
        theta32 = meta.policy.initial_params()
        batch, _ = meta.sample(theta32)
    theta = {k: v.double() for k, v in theta32.items()}
    support = StepBatch(*(x.double() for x in batch.supports[0]))
    q = batch.query
    for i in range(config.meta_batch_size):
        leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        phi = {k: v.detach() for k, v in ref_adapt(leaves, support, i, 0.5, True).items()}
        obs, actions = q.steps.observations[i].double(), q.steps.actions[i].double()
        expected = ref_log_prob(phi, obs, actions)
        assert torch.allclose(q.old_log_prob[i].double(), expected, atol=1e-4)
        assert torch.allclose(q.old_dist[0][i].double(), ref_distribution(phi, obs)[0], atol=1e-5)
        assert (ref_log_prob(theta, obs, actions) - expected).abs().max() > 1e-2


def ref_linear_baseline(obs: Tensor, returns: Tensor, mask: Tensor, ridge: float) -> Tensor:
    """Per-task ridge fit of the returns on (s, s^2, t, t^2, t^3, 1), t = step / 100, over the
    valid steps (Duan et al. 2016's linear feature baseline as the MAML-RL code fits it)."""
    n, horizon, episodes, _ = obs.shape
    values = torch.zeros(n, horizon, episodes, dtype=torch.float64)
    for i in range(n):
        rows, targets, where = [], [], []
        for t in range(horizon):
            for b in range(episodes):
                if mask[i, t, b]:
                    s, u = obs[i, t, b], t / 100
                    rows.append(torch.cat([s, s**2, torch.tensor([u, u**2, u**3, 1.0],
                                                                 dtype=torch.float64)]))
                    targets.append(returns[i, t, b])
                    where.append((t, b))
        x, y = torch.stack(rows), torch.stack(targets)
        w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
        for (t, b), value in zip(where, x @ w):
            values[i, t, b] = value
    return values


@pytest.mark.parametrize("normalize", [False, True])
def test_advantages_use_gamma_and_lambda_as_configured(normalize: bool) -> None:
    """GAE through the trainer's batch path with gamma != lambda, an episode cut short, and
    the baseline fit on discounted returns. (Planted: gae(..., gae_lambda, gamma).)"""
    gamma, lam = 0.9, 0.4
    config = tiny_config(gamma=gamma, gae_lambda=lam, normalize_advantages=normalize)
    g = torch.Generator().manual_seed(3)
    n, horizon, episodes = 2, 6, 3
    obs = torch.randn(n, horizon, episodes, OBS, generator=g, dtype=torch.float64)
    rewards = torch.randn(n, horizon, episodes, generator=g, dtype=torch.float64)
    mask = torch.ones(n, horizon, episodes, dtype=torch.float64)
    mask[0, 3:, 1] = 0.0  # episode 1 of task 0 ends after 3 steps
    rewards = rewards * mask
    episodes_ = Episodes(obs, torch.zeros(n, horizon, episodes, ACT, dtype=torch.float64),
                         rewards, mask)

    returns = torch.zeros_like(rewards)
    for i in range(n):
        for b in range(episodes):
            for t in range(horizon):
                returns[i, t, b] = sum(gamma ** (k - t) * rewards[i, k, b] * mask[i, k, b]
                                       for k in range(t, horizon)) * mask[i, t, b]
    values = ref_linear_baseline(obs, returns, mask, config.baseline_ridge)
    advantages = torch.zeros_like(rewards)
    for i in range(n):
        for b in range(episodes):
            length = int(mask[i, :, b].sum())
            delta = [rewards[i, t, b] + gamma * (values[i, t + 1, b] if t + 1 < length else 0.0)
                     - values[i, t, b] for t in range(length)]
            for t in range(length):
                advantages[i, t, b] = sum((gamma * lam) ** (k - t) * delta[k]
                                          for k in range(t, length))
    if normalize:
        for i in range(n):
            valid = advantages[i][mask[i] == 1]
            std = valid.std(unbiased=False)
            advantages[i] = (advantages[i] - valid.mean()) / (std + 1e-8) * mask[i]

    batch = advantages_batch(episodes_, config)
    expected = to_step_batch(episodes_, advantages)
    assert torch.allclose(batch.advantages, expected.advantages, atol=1e-8)
    assert torch.equal(batch.mask, expected.mask)


def ref_dice_loss(theta: Theta, obs: Tensor, actions: Tensor, adv: Tensor, mask: Tensor
                  ) -> Tensor:
    """Loaded DiCE of one task from its definition, episode by episode (``[T, B]`` inputs):
    -sum_{t,b} (box(w_tb) - box(w_(t-1)b)) A_tb / #valid, w_tb episode b's log-probabilities
    summed up to step t, box(x) = exp(x - stop_grad(x))."""
    total = torch.zeros((), dtype=torch.float64)
    for b in range(obs.shape[1]):
        log_prob = ref_log_prob(theta, obs[:, b], actions[:, b]) * mask[:, b]
        w_before = torch.zeros((), dtype=torch.float64)
        for t in range(obs.shape[0]):
            w = w_before + log_prob[t]
            box, box_before = torch.exp(w - w.detach()), torch.exp(w_before - w_before.detach())
            total = total + (box - box_before) * adv[t, b] * mask[t, b]
            w_before = w
    return -total / mask.sum()


def ref_lvc_loss(theta: Theta, obs: Tensor, actions: Tensor, adv: Tensor, mask: Tensor
                 ) -> Tensor:
    """ProMP's LVC of one task: -mean_t (pi / stop_grad(pi)) A_t over all valid steps."""
    log_prob = ref_log_prob(theta, obs, actions)
    return -weighted_mean(torch.exp(log_prob - log_prob.detach()) * adv, mask)


@pytest.mark.parametrize("estimator,reference", [("dice", ref_dice_loss), ("lvc", ref_lvc_loss)])
def test_inner_loss_groups_several_episodes_per_task(estimator: str, reference: object) -> None:
    """The trainer's inner loss on time-major flattened episodes (3 per task, one cut short)
    has the value, gradient and Hessian of the estimator written episode by episode.
    (Planted: DiCE built with the meta-batch size as its episode count; with the episodes per
    task as its horizon.)"""
    config = tiny_config(estimator=estimator, episodes_per_task=3, meta_batch_size=2)
    g = torch.Generator().manual_seed(4)
    n, horizon, episodes = 1, 4, 3
    obs = torch.randn(n, horizon, episodes, OBS, generator=g, dtype=torch.float64)
    actions = torch.randn(n, horizon, episodes, ACT, generator=g, dtype=torch.float64)
    adv = torch.randn(n, horizon, episodes, generator=g, dtype=torch.float64)
    mask = torch.ones(n, horizon, episodes, dtype=torch.float64)
    mask[0, 2:, 0] = 0.0
    steps = to_step_batch(Episodes(obs, actions, adv, mask), adv)
    theta = tiny_theta()
    with MetaLearner(config) as meta:
        inner_loss = meta.inner_loss

    def trainer_loss(vector: Tensor) -> Tensor:
        return inner_loss(unflat(vector, theta), steps.task(0))

    def reference_loss(vector: Tensor) -> Tensor:
        return reference(unflat(vector, theta), obs[0], actions[0], adv[0],  # type: ignore
                         mask[0])

    point = flat(theta)
    hessian = torch.autograd.functional.hessian(trainer_loss, point)
    expected = torch.autograd.functional.hessian(reference_loss, point)
    assert torch.allclose(hessian, expected, atol=1e-10)
    assert hessian.abs().max() > 1e-2
    grad = torch.autograd.functional.jacobian(trainer_loss, point)
    assert torch.allclose(grad, torch.autograd.functional.jacobian(reference_loss, point),
                          atol=1e-10)


def ref_promp_update(theta: Theta, batch: MetaBatch, config: TrainConfig, kl_coef: float
                     ) -> tuple[Tensor, float]:
    """ProMP's outer step from its definition (Rothfuss et al. 2018, Algorithm 1, eq. 14):
    ``promp_steps`` Adam steps on the clipped surrogate of the adapted policies plus
    ``kl_coef`` times KL(pre-update policy that sampled the supports || pi_theta), then the
    penalty weight doubled above 1.5 x target, halved below target / 1.5. Returns the new
    parameters and the KL measured after the steps."""
    eps, lr = config.clip_eps, config.inner_lr
    support = batch.supports[0]
    n = support.mask.shape[0]
    old = [tuple(x.detach() for x in ref_distribution(theta, support.observations[i]))
           for i in range(n)]

    def objective(vector: Tensor) -> tuple[Tensor, Tensor]:
        params = unflat(vector, theta)
        losses, kls = [], []
        q = batch.query
        for i in range(n):
            phi = ref_adapt(params, support, i, lr, first_order=False)
            ratio = torch.exp(ref_log_prob(phi, q.steps.observations[i], q.steps.actions[i])
                              - q.old_log_prob[i])
            adv = q.steps.advantages[i]
            clipped = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
            losses.append(-weighted_mean(clipped, q.steps.mask[i]))
            mean, log_std = ref_distribution(params, support.observations[i])
            kls.append(weighted_mean(ref_kl(old[i][0], old[i][1], mean, log_std),
                                     support.mask[i]))
        return torch.stack(losses).mean(), torch.stack(kls).mean()

    vector = flat(theta)
    m, v = torch.zeros_like(vector), torch.zeros_like(vector)
    b1, b2 = 0.9, 0.999
    for t in range(1, config.promp_steps + 1):
        point = vector.detach().requires_grad_(True)
        loss, kl = objective(point)
        grad = torch.autograd.grad(loss + kl_coef * kl, point)[0]
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
        vector = vector - config.outer_lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + 1e-8)
    point = vector.detach().requires_grad_(True)
    return vector.detach(), objective(point)[1].item()


def test_promp_update_and_its_kl_coefficient_follow_the_definition() -> None:
    """The whole ProMP update through the trainer: the penalty's sign and weight, Adam with
    ``outer_lr``, and the coefficient's direction in each of its three regimes. (Planted: the
    penalty subtracted; the doubling and halving swapped; ``inner_lr`` for ``outer_lr``; the
    configured initial weight in place of the state's current one.)"""
    theta = tiny_theta()
    batch = tiny_batch(theta, lr=0.1)
    fields = dict(outer="promp", inner_lr=0.1, outer_lr=0.05, promp_steps=3, inner_kl_coef=0.3)
    current = 2.0  # the state's penalty weight, adapted by earlier iterations
    expected, kl = ref_promp_update(theta, batch, tiny_config(**fields), current)
    # the penalty matters here: the same steps without it end elsewhere
    unpenalised, _ = ref_promp_update(theta, batch, tiny_config(**fields), 0.0)
    assert (expected - unpenalised).norm() > 1e-4
    for target, coefficient in ((kl / 2, 4.0), (kl * 2, 1.0), (kl, 2.0)):
        config = tiny_config(**fields, inner_kl_target=target)
        with MetaLearner(config) as meta:
            state = meta.initial_state()._replace(params=theta, kl_coef=current)
            state = state._replace(adam=state.adam._replace(  # type: ignore[union-attr]
                first_moment={k: torch.zeros_like(x) for k, x in theta.items()},
                second_moment={k: torch.zeros_like(x) for k, x in theta.items()}))
            new, metrics = meta.update(state, batch)
        assert torch.allclose(flat(new.params), expected, atol=1e-9)
        assert metrics["outer/pre_update_kl"] == pytest.approx(kl, rel=1e-9)
        assert new.kl_coef == coefficient
