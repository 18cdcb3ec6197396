"""Meta-gradient estimators: same adaptation step, different curvature (float64)."""

import pytest
import torch

from metarl.core.episodes import StepBatch
from metarl.core.estimators import inner_loss_for
from metarl.core.linalg import flatten, unflatten
from metarl.core.policies import GaussianMLPPolicy


def _problem() -> tuple[GaussianMLPPolicy, dict[str, torch.Tensor], StepBatch]:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (4,), init_log_std=-0.5).double()
    g = torch.Generator().manual_seed(1)
    m = 7
    batch = StepBatch(
        torch.randn(m, 2, generator=g, dtype=torch.float64),
        torch.randn(m, 2, generator=g, dtype=torch.float64),
        torch.randn(m, generator=g, dtype=torch.float64),
        torch.tensor([1.0, 1, 1, 1, 1, 0, 1], dtype=torch.float64),
    )
    return policy, policy.initial_params(), batch


def test_estimators_share_value_and_gradient() -> None:
    policy, params, batch = _problem()
    values = {}
    grads = {}
    for name in ("maml", "lvc"):
        loss = inner_loss_for(policy, name)
        values[name] = loss(params, batch)
        grads[name] = flatten(torch.func.grad(lambda p, loss=loss: loss(p, batch))(params))
    # the LVC loss is -mean(A) at the point (ratio 1), the REINFORCE loss -mean(log pi A):
    # different values, but the same gradient, so the adaptation step is the same
    assert torch.allclose(grads["maml"], grads["lvc"], atol=1e-12)
    assert values["lvc"] == pytest.approx(-(batch.advantages * batch.mask).sum().item() / 6)


def test_lvc_hessian_adds_the_score_outer_product_term() -> None:
    policy, params, batch = _problem()
    theta = flatten(params)

    def as_fn(name: str):
        loss = inner_loss_for(policy, name)
        return lambda flat: loss(unflatten(flat, params), batch)

    h_maml = torch.autograd.functional.hessian(as_fn("maml"), theta)
    h_lvc = torch.autograd.functional.hessian(as_fn("lvc"), theta)
    scores = torch.autograd.functional.jacobian(
        lambda flat: policy.log_prob(unflatten(flat, params), batch.observations, batch.actions),
        theta,
    )  # [M, P]: grad log pi of every step
    weights = batch.advantages * batch.mask / batch.mask.sum()
    expected_extra = -(scores.T * weights) @ scores
    assert torch.allclose(h_lvc - h_maml, expected_extra, atol=1e-10)
    assert expected_extra.abs().max() > 1e-3


def test_unknown_estimator() -> None:
    policy, _, _ = _problem()
    with pytest.raises(ValueError, match="estimator"):
        inner_loss_for(policy, "dice2")


class _TabularPolicy:
    """Softmax policy over 2 actions in 2 one-hot states: enough to enumerate an MDP exactly."""

    def log_prob(self, params: dict[str, torch.Tensor], obs: torch.Tensor,
                 actions: torch.Tensor) -> torch.Tensor:
        logits = obs @ params["logits"]  # one-hot state rows pick the state's logits
        log_probs = torch.log_softmax(logits, dim=-1)
        return log_probs.gather(-1, actions.long()).squeeze(-1)


# 2 steps from state 0; the next state is the action taken; reward r(s, a) = REWARD[s, a]
REWARD = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)


def _trajectories() -> list[tuple[int, int]]:
    return [(a0, a1) for a0 in (0, 1) for a1 in (0, 1)]


def _episode(a0: int, a1: int) -> StepBatch:
    """One episode as a StepBatch with reward-to-go advantages (time-major, B = 1)."""
    obs = torch.eye(2, dtype=torch.float64)[[0, a0]]
    actions = torch.tensor([[a0], [a1]], dtype=torch.float64)
    to_go = torch.stack([REWARD[0, a0] + REWARD[a0, a1], REWARD[a0, a1]])
    return StepBatch(obs, actions, to_go, torch.ones(2, dtype=torch.float64))


def _expected_return(logits: torch.Tensor) -> torch.Tensor:
    pi = torch.softmax(logits.view(2, 2), dim=-1)
    terms = [pi[0, a0] * pi[a0, a1] * (REWARD[0, a0] + REWARD[a0, a1])
             for a0, a1 in _trajectories()]
    return torch.stack(terms).sum()


def _expected_derivatives(estimator: str, logits: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """E over trajectories (enumerated, weighted by their probabilities) of the gradient and
    Hessian of the per-episode surrogate -T * loss (T = 2 steps)."""
    policy = _TabularPolicy()
    loss = inner_loss_for(policy, estimator, horizon=2)
    pi = torch.softmax(logits.view(2, 2), dim=-1).detach()
    gradient = torch.zeros(4, dtype=torch.float64)
    hessian = torch.zeros(4, 4, dtype=torch.float64)
    for a0, a1 in _trajectories():
        episode = _episode(a0, a1)

        def surrogate(flat: torch.Tensor, episode: StepBatch = episode) -> torch.Tensor:
            return -2.0 * loss({"logits": flat.view(2, 2)}, episode)

        weight = pi[0, a0] * pi[a0, a1]
        gradient += weight * torch.autograd.functional.jacobian(surrogate, logits)
        hessian += weight * torch.autograd.functional.hessian(surrogate, logits)
    return gradient, hessian


def test_dice_is_unbiased_for_gradient_and_hessian_of_the_expected_return() -> None:
    logits = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    exact_gradient = torch.autograd.functional.jacobian(_expected_return, logits)
    exact_hessian = torch.autograd.functional.hessian(_expected_return, logits)
    for estimator in ("maml", "lvc", "dice"):
        gradient, hessian = _expected_derivatives(estimator, logits)
        assert torch.allclose(gradient, exact_gradient, atol=1e-12), estimator
        if estimator == "dice":
            assert torch.allclose(hessian, exact_hessian, atol=1e-12)
        else:  # the other two drop curvature terms: biased second derivatives
            assert not torch.allclose(hessian, exact_hessian, atol=1e-3), estimator


def test_dice_needs_whole_episodes() -> None:
    loss = inner_loss_for(_TabularPolicy(), "dice", horizon=3)
    with pytest.raises(ValueError, match="2 steps do not split into episodes of horizon 3"):
        loss({"logits": torch.zeros(2, 2, dtype=torch.float64)}, _episode(0, 1))
    with pytest.raises(ValueError, match="needs the horizon"):
        inner_loss_for(_TabularPolicy(), "dice")
