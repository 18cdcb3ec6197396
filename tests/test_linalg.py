import pytest
import torch

from metarl.core.adaptation import per_task
from metarl.core.episodes import StepBatch
from metarl.core.estimators import reinforce_loss
from metarl.core.gaussian_mlp_hessian import gaussian_mlp_reinforce_hessian
from metarl.core.inner_hessian import InnerHessianBuilder
from metarl.core.linalg import (
    batched_conjugate_gradient,
    conjugate_gradient,
    flatten,
    gauss_newton_vector_product,
    unflatten,
)
from metarl.core.maml import (
    MetaBatch,
    QueryBatch,
    curvature_subsample,
    fisher_vector_product,
    query_loss_and_kl,
)
from metarl.core.policies import GaussianMLPPolicy


def test_conjugate_gradient_equals_linalg_solve() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    result = conjugate_gradient(lambda v: a @ v, b, iters=6, tol=0.0)
    assert torch.allclose(result.solution, torch.linalg.solve(a, b), atol=1e-8)
    assert result.iterations == 6


def test_conjugate_gradient_stops_early_on_tolerance() -> None:
    a = torch.diag(torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    result = conjugate_gradient(lambda v: a @ v, torch.ones(3, dtype=torch.float64), iters=10)
    assert result.iterations == 1  # one direction suffices for a multiple of the identity
    assert torch.allclose(result.solution, torch.full((3,), 0.5, dtype=torch.float64))


def test_single_system_stops_at_negative_curvature_as_the_batched_solver() -> None:
    """The one-system solver is the batched one (a batch of one): it has the guard too. For
    A = diag(1, -1) and b = (1, 0.1) the first step has curvature b^T A b = 0.99 > 0, the second
    direction meets p^T A p < 0, and CG keeps its first iterate (b^T b / b^T A b) b."""
    a = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    b = torch.tensor([1.0, 0.1], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="positive definite"):
        result = conjugate_gradient(lambda v: a @ v, b, iters=10, tol=1e-28)
    first = (b @ b) / (b @ a @ b) * b
    assert torch.allclose(result.solution, first, atol=1e-15)
    assert result.iterations == 1


def test_batched_conjugate_gradient_matches_solve() -> None:
    g = torch.Generator().manual_seed(3)
    m = torch.randn(5, 8, 8, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + 0.1 * torch.eye(8, dtype=torch.float64)
    a[0] = 3.0 * torch.eye(8, dtype=torch.float64)  # converges in one iteration
    b = torch.randn(5, 8, generator=g, dtype=torch.float64)
    result = batched_conjugate_gradient(lambda v: (a @ v.unsqueeze(-1)).squeeze(-1), b, 40,
                                        tol=1e-26)
    assert torch.allclose(result.solution, torch.linalg.solve(a, b), atol=1e-9)
    assert int(result.iterations[0]) == 1
    assert int(result.iterations.max()) > 1
    assert float(result.residual_norm.max()) < 1e-12


def test_cg_stops_at_negative_curvature_keeping_its_last_iterate() -> None:
    """Row 0 is positive definite and solved exactly; row 1, diag(1, -1) with b = (1, 0.1),
    takes one positive-curvature step (b^T A b = 0.99) and then meets p^T A p < 0: it keeps
    its first iterate (b^T b / b^T A b) b instead of stepping towards the saddle."""
    a = torch.stack([torch.diag(torch.tensor([2.0, 3.0], dtype=torch.float64)),
                     torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))])
    b = torch.tensor([[1.0, 1.0], [1.0, 0.1]], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="positive definite"):
        result = batched_conjugate_gradient(lambda v: (a @ v.unsqueeze(-1)).squeeze(-1), b, 10,
                                            tol=1e-28)
    assert torch.allclose(result.solution[0], torch.linalg.solve(a[0], b[0]), atol=1e-12)
    first = (b[1] @ b[1]) / (b[1] @ a[1] @ b[1]) * b[1]
    assert torch.allclose(result.solution[1], first, atol=1e-12)
    assert result.iterations.tolist() == [2, 1]


def test_flatten_round_trip() -> None:
    params = {"a": torch.randn(2, 3), "b": torch.randn(4)}
    back = unflatten(flatten(params), params)
    assert all(torch.equal(params[k], back[k]) for k in params)


def test_gauss_newton_product_equals_explicit_jtmj() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    outputs = torch.tanh(x @ w.T)  # [5, 3]
    curvature = torch.rand(5, 3, generator=g, dtype=torch.float64)
    product = gauss_newton_vector_product([outputs], [w], [curvature], damping=0.1)
    jac = torch.autograd.functional.jacobian(lambda w_: torch.tanh(x @ w_.T), w.detach())
    j = jac.reshape(15, 12)
    expected = j.T @ torch.diag(curvature.reshape(-1)) @ j + 0.1 * torch.eye(12, dtype=w.dtype)
    v = torch.randn(12, generator=g, dtype=torch.float64)
    assert torch.allclose(product(v), expected @ v, atol=1e-10)


def _tiny_meta_batch(policy: GaussianMLPPolicy, n: int, m: int) -> MetaBatch:
    g = torch.Generator().manual_seed(2)

    def steps() -> StepBatch:
        return StepBatch(
            observations=torch.randn(n, m, 2, generator=g, dtype=torch.float64),
            actions=torch.randn(n, m, 2, generator=g, dtype=torch.float64),
            advantages=torch.randn(n, m, generator=g, dtype=torch.float64),
            mask=(torch.rand(n, m, generator=g) > 0.2).double(),
        )

    support, query = steps(), steps()
    # the "old" policy is the adapted policy at theta, as when the query data were sampled
    adapted = _adapted(policy, policy.initial_params(), support, n)
    old_dist = policy.distribution_params(adapted, query.observations)
    old_log_prob = torch.zeros(n, m, dtype=torch.float64)
    return MetaBatch([support], QueryBatch(query, old_dist, old_log_prob))


def _adapted(policy: GaussianMLPPolicy, params: dict[str, torch.Tensor], support: StepBatch,
             n: int) -> dict[str, torch.Tensor]:
    from metarl.core.adaptation import adapt
    return adapt(reinforce_loss(policy), per_task(params, n), [support], 0.5)


# the inner Hessian by autograd (the default) or written out for the Gaussian MLP
BUILDERS = [None, gaussian_mlp_reinforce_hessian("tanh")]


@pytest.mark.parametrize("builder", BUILDERS, ids=["autograd", "hand"])
def test_fisher_vector_product_equals_hessian_of_mean_kl_through_adaptation(
        builder: InnerHessianBuilder | None) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (3,), init_log_std=-0.3).double()
    params = policy.initial_params()
    batch = _tiny_meta_batch(policy, n=3, m=6)

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        return query_loss_and_kl(policy, reinforce_loss(policy), unflatten(flat, params), batch,
                                 inner_lr=0.5)[1]

    theta = flatten(params)
    hessian = torch.autograd.functional.hessian(mean_kl, theta)
    for first_order in (False, True):
        product = fisher_vector_product(policy, reinforce_loss(policy), params, batch, 0.5,
                                        first_order=first_order, inner_hessian=builder)
        explicit = torch.stack([product(e) for e in torch.eye(theta.numel(), dtype=theta.dtype)])
        if first_order:
            # FOMAML treats d phi / d theta as the identity: the KL Hessian at phi itself
            assert not torch.allclose(explicit, hessian, atol=1e-6)
        else:
            assert torch.allclose(explicit, hessian, atol=1e-9)


@pytest.mark.parametrize("builder", BUILDERS, ids=["autograd", "hand"])
def test_fisher_vector_product_is_exact_on_a_query_subsample_after_two_inner_steps(
        builder: InnerHessianBuilder | None) -> None:
    """TRPO's curvature batch keeps every support step and a subsample of the query: the
    product equals the explicit Hessian of the mean KL on that subsample, through two inner
    steps adapted on all the support data."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (3,), init_log_std=-0.3).double()
    params = policy.initial_params()
    g = torch.Generator().manual_seed(2)
    n, m = 3, 8

    def steps() -> StepBatch:
        return StepBatch(torch.randn(n, m, 2, generator=g, dtype=torch.float64),
                         torch.randn(n, m, 2, generator=g, dtype=torch.float64),
                         0.3 * torch.randn(n, m, generator=g, dtype=torch.float64),
                         (torch.rand(n, m, generator=g) > 0.2).double())

    supports, query = [steps(), steps()], steps()
    from metarl.core.adaptation import adapt
    adapted = adapt(reinforce_loss(policy), per_task(params, n), supports, 0.3)
    old_dist = policy.distribution_params(adapted, query.observations)
    batch = MetaBatch(supports, QueryBatch(query, tuple(x.detach() for x in old_dist),
                                           torch.zeros(n, m, dtype=torch.float64)))
    curvature_batch = curvature_subsample(batch, 0.5, torch.Generator().manual_seed(0))
    assert curvature_batch.supports is batch.supports
    assert curvature_batch.query.steps.mask.shape == (n, m // 2)

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        return query_loss_and_kl(policy, reinforce_loss(policy), unflatten(flat, params),
                                 curvature_batch, inner_lr=0.3)[1]

    hessian = torch.autograd.functional.hessian(mean_kl, flatten(params))
    product = fisher_vector_product(policy, reinforce_loss(policy), params, curvature_batch, 0.3,
                                    damping=0.01, inner_hessian=builder)
    explicit = torch.stack([product(e) for e in torch.eye(hessian.shape[0], dtype=torch.float64)])
    expected = hessian + 0.01 * torch.eye(hessian.shape[0], dtype=torch.float64)
    assert torch.allclose(explicit, expected, rtol=1e-9, atol=1e-9 * hessian.abs().max())


def test_curvature_subsample_keeps_whole_tasks_aligned() -> None:
    """Dropping tasks keeps each kept task's supports whole and paired with its own query;
    the kept query steps are the same for every task."""
    g = torch.Generator().manual_seed(3)
    n, m = 6, 10

    def steps(offset: float) -> StepBatch:
        # each task's entries carry its index, so a mismatch between supports and query shows
        tags = offset + torch.arange(n, dtype=torch.float64).view(n, 1)
        return StepBatch(tags.expand(n, m).unsqueeze(-1).repeat(1, 1, 2),
                         torch.randn(n, m, 2, generator=g, dtype=torch.float64),
                         tags.expand(n, m).clone(), torch.ones(n, m, dtype=torch.float64))

    supports, query = [steps(0.0), steps(100.0)], steps(200.0)
    batch = MetaBatch(supports, QueryBatch(query, (query.observations.clone(),
                                                  torch.zeros(n, 1, 2, dtype=torch.float64)),
                                           query.advantages.clone()))
    part = curvature_subsample(batch, 0.3, torch.Generator().manual_seed(0), task_fraction=0.5)
    kept = part.query.steps.advantages[:, 0] - 200.0
    assert len(kept) == 3 and len(set(kept.tolist())) == 3
    for s, support in enumerate(part.supports):
        assert support.mask.shape == (3, m)  # every support step of a kept task
        assert torch.equal(support.advantages[:, 0] - 100.0 * s, kept)
    assert part.query.steps.mask.shape == (3, 3)
    assert torch.equal(part.query.old_log_prob, part.query.steps.advantages)
    assert torch.equal(part.query.old_dist[0][..., 0], part.query.steps.observations[..., 0])
