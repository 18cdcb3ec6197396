"""The hand-written gradient and Hessian-vector products of a Gaussian MLP's REINFORCE loss
against autograd's, in float64, and the objective's choice between them."""

import pytest
import torch

from metarl.config import _CURVATURE_DTYPES, TrainConfig
from metarl.core.categorical import CategoricalMLPPolicy
from metarl.core.episodes import StepBatch
from metarl.core.estimators import inner_loss_for, reinforce_loss
from metarl.core.gaussian_mlp_hessian import gaussian_mlp_reinforce_hessian, padded_steps
from metarl.core.inner_hessian import autograd_inner_hessian
from metarl.core.policies import GaussianMLPPolicy
from metarl.rl.objective import CURVATURE_DTYPES, MetaObjective

N, M, OBS, ACT = 3, 9, 3, 2


def _per_task_params(policy: GaussianMLPPolicy, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: v.unsqueeze(0) + 0.3 * torch.randn(N, *v.shape, generator=g, dtype=v.dtype)
            for k, v in policy.initial_params().items()}


def _support(seed: int) -> StepBatch:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(N, M, generator=g) > 0.3).double()
    mask[-1] = 0.0  # a task without a valid step has zero gradient and Hessian
    return StepBatch(torch.randn(N, M, OBS, generator=g, dtype=torch.float64),
                     torch.randn(N, M, ACT, generator=g, dtype=torch.float64),
                     torch.randn(N, M, generator=g, dtype=torch.float64), mask)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("hidden", [(4,), (5, 4)])
def test_gradient_and_hessian_products_equal_autograds(activation: str,
                                                       hidden: tuple[int, ...]) -> None:
    policy = GaussianMLPPolicy(OBS, ACT, hidden, activation, init_log_std=-0.4).double()
    params, support = _per_task_params(policy, 0), _support(1)
    expected = autograd_inner_hessian(reinforce_loss(policy))(params, support, True)
    hand = gaussian_mlp_reinforce_hessian(activation)(params, support, True)
    for a, b in zip(expected.gradient, hand.gradient):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(2)
    vectors = [torch.randn(v.shape, generator=g, dtype=torch.float64) for v in params.values()]
    products = list(zip(expected.product(vectors), hand.product(vectors)))
    for a, b in products:
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # the products are not trivially zero, and the empty task's are
    assert all(a[:-1].abs().max() > 1e-3 for a, _ in products)
    assert all(b[-1].abs().max() == 0 for _, b in products)


def test_hessian_is_the_derivative_of_the_gradient() -> None:
    """Independent of autograd's double backward: H v equals the central difference of the
    hand-written gradient along v."""
    policy = GaussianMLPPolicy(OBS, ACT, (5, 4), "tanh", init_log_std=0.2).double()
    params, support = _per_task_params(policy, 3), _support(4)
    build = gaussian_mlp_reinforce_hessian("tanh")
    g = torch.Generator().manual_seed(5)
    vectors = [torch.randn(v.shape, generator=g, dtype=torch.float64) for v in params.values()]
    eps = 1e-6

    def gradient_at(sign: float) -> list[torch.Tensor]:
        moved = {k: p + sign * eps * v for (k, p), v in zip(params.items(), vectors)}
        return build(moved, support, False).gradient

    differences = [(a - b) / (2 * eps) for a, b in zip(gradient_at(1.0), gradient_at(-1.0))]
    for h, d in zip(build(params, support, True).product(vectors), differences):
        assert torch.allclose(h, d, rtol=1e-6, atol=1e-7)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        gaussian_mlp_reinforce_hessian("gelu")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_objective_uses_the_policys_own_activation(activation: str) -> None:
    """The run's builder gives autograd's products for the run's policy: it fails if the
    objective handed the builder another activation than the policy's."""
    config = TrainConfig(hidden_sizes=(5, 4), activation=activation)
    policy = GaussianMLPPolicy(OBS, ACT, (5, 4), activation).double()
    objective = MetaObjective.for_config(config, policy)
    params, support = _per_task_params(policy, 6), _support(7)
    vectors = [torch.ones_like(v) for v in params.values()]
    run = objective.inner_hessian(params, support, True).product(vectors)
    expected = autograd_inner_hessian(objective.inner_loss)(params, support, True).product(vectors)
    for a, b in zip(run, expected):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("estimator", ["lvc", "dice"])
def test_other_estimators_keep_autograds_products(estimator: str) -> None:
    """The hand-written Hessian is the "maml" loss's: LVC's and DiCE's differ from it."""
    config = TrainConfig(hidden_sizes=(4,), estimator=estimator, horizon=M)
    policy = GaussianMLPPolicy(OBS, ACT, (4,)).double()
    objective = MetaObjective.for_config(config, policy)
    params, support = _per_task_params(policy, 8), _support(9)
    vectors = [torch.ones_like(v) for v in params.values()]
    run = objective.inner_hessian(params, support, True).product(vectors)
    own = autograd_inner_hessian(inner_loss_for(policy, estimator, M))(params, support, True)
    for a, b in zip(run, own.product(vectors)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_categorical_policies_keep_autograds_products() -> None:
    policy = CategoricalMLPPolicy(OBS, 4, (5,))
    objective = MetaObjective.for_config(TrainConfig(hidden_sizes=(5,)), policy)
    assert "autograd" in objective.inner_hessian.__qualname__


def _relative_error(products: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    difference = torch.cat([(a.double() - b).flatten() for a, b in zip(products, reference)])
    return float(difference.norm() / torch.cat([b.flatten() for b in reference]).norm())


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_bfloat16_products_are_close_to_float64s(activation: str) -> None:
    """The products in bfloat16 (inputs float32, as in training) land within bfloat16's
    rounding of the float64 products, and come back in the vectors' dtype; float32's are
    a thousand times closer, so the bfloat16 ones did compute in bfloat16."""
    policy = GaussianMLPPolicy(OBS, ACT, (16, 16), activation, init_log_std=-0.4).double()
    params, support = _per_task_params(policy, 10), _support(11)
    g = torch.Generator().manual_seed(12)
    vectors = [torch.randn(v.shape, generator=g, dtype=torch.float64) for v in params.values()]
    reference = gaussian_mlp_reinforce_hessian(activation)(params, support, True).product(vectors)

    def single(tree: dict[str, torch.Tensor] | list[torch.Tensor]) -> list[torch.Tensor]:
        values = tree.values() if isinstance(tree, dict) else tree
        return [v.float() for v in values]

    support32 = StepBatch(*(x.float() for x in support))
    params32 = dict(zip(params, single(params)))
    errors = {}
    for dtype in (None, torch.bfloat16):
        step = gaussian_mlp_reinforce_hessian(activation, dtype)(params32, support32, True)
        products = step.product(single(vectors))
        assert all(p.dtype == torch.float32 for p in products)
        assert all(a.dtype == torch.float32 for a in step.gradient)
        errors[dtype] = _relative_error(products, reference)
    assert errors[None] < 1e-6
    assert 1e-5 < errors[torch.bfloat16] < 2e-2


def test_objective_computes_the_curvature_in_the_configs_dtype() -> None:
    """``curvature_dtype: bfloat16`` reaches the products (they differ from float32's by
    bfloat16's rounding, not float32's); the gradient is float32's either way."""
    policy = GaussianMLPPolicy(OBS, ACT, (16,), "relu")
    g = torch.Generator().manual_seed(13)
    params = {k: v.unsqueeze(0) + 0.3 * torch.randn(N, *v.shape, generator=g)
              for k, v in policy.initial_params().items()}
    support = StepBatch(*(x.float() for x in _support(14)))
    vectors = [torch.randn(v.shape, generator=g) for v in params.values()]
    steps = {name: MetaObjective.for_config(
        TrainConfig(hidden_sizes=(16,), activation="relu", curvature_dtype=name), policy
    ).inner_hessian(params, support, True) for name in ("float32", "bfloat16")}
    float32, bfloat16 = (steps[name].product(vectors) for name in ("float32", "bfloat16"))
    error = _relative_error(bfloat16, [p.double() for p in float32])
    assert 1e-5 < error < 2e-2
    for a, b in zip(steps["float32"].gradient, steps["bfloat16"].gradient):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_bfloat16_curvature_needs_the_hand_written_products() -> None:
    assert tuple(CURVATURE_DTYPES) == _CURVATURE_DTYPES
    with pytest.raises(ValueError, match="curvature_dtype must be 'float32' with estimator"):
        TrainConfig(estimator="dice", curvature_dtype="bfloat16")
    with pytest.raises(ValueError, match="curvature_dtype must be one of"):
        TrainConfig(curvature_dtype="float16")
    config = TrainConfig(hidden_sizes=(5,), curvature_dtype="bfloat16")
    with pytest.raises(ValueError, match="set curvature_dtype: float32"):
        MetaObjective.for_config(config, CategoricalMLPPolicy(OBS, 4, (5,)))


def test_padded_steps_change_neither_gradient_nor_products() -> None:
    """The masked steps that bfloat16's builder appends (to meet few shapes) weigh nothing."""
    policy = GaussianMLPPolicy(OBS, ACT, (5, 4), "relu", init_log_std=-0.4).double()
    params, support = _per_task_params(policy, 15), _support(16)
    padded = padded_steps(support, 8)
    assert padded.mask.shape[-1] == 16 and padded.observations.shape[-2] == 16
    assert padded_steps(padded, 8) is padded
    build = gaussian_mlp_reinforce_hessian("relu")
    vectors = [torch.randn_like(v) for v in params.values()]
    own, with_padding = build(params, support, True), build(params, padded, True)
    for a, b in zip(own.gradient + own.product(vectors),
                    with_padding.gradient + with_padding.product(vectors)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
