import torch

from metarl.core.linear_baseline import baseline_features, fit_linear_baseline


def test_features_layout() -> None:
    obs = torch.full((1, 3, 1, 2), 2.0, dtype=torch.float64)
    f = baseline_features(obs)
    assert f.shape == (1, 3, 1, 8)
    t = 2 / 100
    expected = torch.tensor([2.0, 2.0, 4.0, 4.0, t, t**2, t**3, 1.0], dtype=torch.float64)
    assert torch.allclose(f[0, 2, 0], expected)


def test_fit_recovers_a_linear_target_per_task() -> None:
    g = torch.Generator().manual_seed(1)
    n, horizon, episodes = 3, 20, 5
    obs = torch.randn(n, horizon, episodes, 2, generator=g, dtype=torch.float64)
    features = baseline_features(obs)
    weights = torch.randn(n, features.shape[-1], generator=g, dtype=torch.float64)
    target = torch.einsum("ntbf,nf->ntb", features, weights)  # a different line per task
    mask = torch.ones(n, horizon, episodes, dtype=torch.float64)
    fitted = fit_linear_baseline(obs, target, mask, ridge=1e-10)
    assert torch.allclose(fitted, target, atol=1e-6)


def test_fit_matches_lstsq_and_ignores_masked_steps() -> None:
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(2, 10, 3, 2, generator=g, dtype=torch.float64)
    returns = torch.randn(2, 10, 3, generator=g, dtype=torch.float64)
    mask = torch.ones_like(returns)
    mask[:, 7:, 0] = 0.0
    returns_with_junk = returns + (1 - mask) * 1e6  # junk after termination must not matter
    fitted = fit_linear_baseline(obs, returns_with_junk, mask, ridge=1e-5)
    for task in range(2):
        x = baseline_features(obs)[task][mask[task] > 0]
        y = returns[task][mask[task] > 0]
        w = torch.linalg.solve(x.T @ x + 1e-5 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
        assert torch.allclose(fitted[task][mask[task] > 0], x @ w, atol=1e-8)
    assert torch.all(fitted[mask == 0] == 0)


def test_float32_inputs_are_solved_in_float64() -> None:
    # a constant observation makes X^T X rank-deficient; the ridge keeps it solvable
    obs = torch.zeros(1, 100, 20, 2)
    returns = torch.ones(1, 100, 20)
    fitted = fit_linear_baseline(obs, returns, torch.ones_like(returns))
    assert fitted.dtype == torch.float32
    assert torch.isfinite(fitted).all()
    assert torch.allclose(fitted, returns, atol=1e-3)


def test_a_task_with_no_valid_step_and_no_ridge_falls_back_to_least_squares() -> None:
    """X^T X = 0 has no Cholesky factor: that batch is solved by least squares (values 0)."""
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(2, 6, 2, 3, generator=g, dtype=torch.float64)
    returns = torch.randn(2, 6, 2, generator=g, dtype=torch.float64)
    mask = torch.ones_like(returns)
    mask[1] = 0.0  # the second task's episodes all ended before their first step counted
    fitted = fit_linear_baseline(obs, returns, mask, ridge=0.0)
    assert torch.all(fitted[1] == 0) and torch.isfinite(fitted).all()
    x = baseline_features(obs)[0].reshape(-1, 10)
    w = torch.linalg.lstsq(x, returns[0].reshape(-1, 1)).solution
    assert torch.allclose(fitted[0].reshape(-1, 1), x @ w, atol=1e-8)


ANT_SIZED_FIT = """
import torch
from metarl.core.linear_baseline import baseline_features, fit_linear_baseline
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
obs = torch.randn(40, 25, 20, 111, generator=g)  # 40 tasks, the Ant's 226 features
returns = torch.randn(40, 25, 20, generator=g)
fitted = fit_linear_baseline(obs, returns, torch.ones_like(returns))
x = baseline_features(obs.double())[7].reshape(-1, 226)
normal = x.T @ x + 1e-5 * torch.eye(226, dtype=torch.float64)
w = torch.linalg.solve(normal, x.T @ returns[7].double().reshape(-1, 1))  # one matrix
assert torch.allclose(fitted[7].double().reshape(-1, 1), x @ w, atol=1e-4), "wrong fit"
print("fitted")
"""


def test_ant_sized_fit_with_two_threads_finishes_and_is_right() -> None:
    """torch 2.13's batched LU failed or hung here with two threads (see the module's doc); run
    in a child process so that a hang fails this test instead of the suite."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", ANT_SIZED_FIT], capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == 0 and "fitted" in child.stdout, child.stderr[-2000:]


def test_fitting_in_batches_of_tasks_changes_no_value(monkeypatch) -> None:
    """Big observation batches are fitted a few tasks at a time (bounded memory): 5 tasks in
    batches of 2 give the values of one batch of 5."""
    import metarl.core.linear_baseline as linear_baseline

    g = torch.Generator().manual_seed(4)
    obs = torch.randn(5, 12, 3, 4, generator=g, dtype=torch.float64)
    returns = torch.randn(5, 12, 3, generator=g, dtype=torch.float64)
    mask = (torch.rand(5, 12, 3, generator=g) > 0.2).double()
    whole = fit_linear_baseline(obs, returns, mask)
    task_bytes = 12 * 3 * (2 * 4 + 4) * 8
    monkeypatch.setattr(linear_baseline, "FEATURE_BYTES_PER_BATCH", 2 * task_bytes)
    batched = fit_linear_baseline(obs, returns, mask)
    assert torch.allclose(batched, whole, atol=1e-12)
    assert torch.all(batched[mask == 0] == 0)
