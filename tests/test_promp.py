import torch

from metarl.core.episodes import StepBatch
from metarl.core.maml import QueryBatch
from metarl.core.policies import GaussianMLPPolicy
from metarl.core.promp import clipped_surrogate_loss


def test_clipped_surrogate_by_hand() -> None:
    policy = GaussianMLPPolicy(1, 1, (), init_log_std=0.0).double()
    params = {k: torch.zeros_like(v) for k, v in policy.initial_params().items()}  # N(0, 1)
    actions = torch.zeros(1, 4, 1, dtype=torch.float64)
    log_prob_now = -0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))
    # old log-probs chosen so that the ratios are 2, 0.5, 1.1 and 0.5
    ratios = torch.tensor([2.0, 0.5, 1.1, 0.5], dtype=torch.float64)
    old = (log_prob_now - ratios.log()).view(1, 4)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
    steps = StepBatch(torch.zeros(1, 4, 1, dtype=torch.float64), actions, advantages,
                      torch.ones(1, 4, dtype=torch.float64))
    query = QueryBatch(steps, (torch.zeros(1, 4, 1), torch.zeros(1, 1, 1)), old)
    loss = clipped_surrogate_loss(policy, clip_eps=0.3)(params, query)
    # min(r A, clip(r) A): 1.3 (clipped), 0.5, -1.1, -0.7 (clip raises 0.5 to 0.7, min picks it)
    expected = -(1.3 + 0.5 - 1.1 - 0.7) / 4
    assert torch.allclose(loss, torch.tensor([expected], dtype=torch.float64))
