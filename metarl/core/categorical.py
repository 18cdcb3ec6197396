"""Categorical MLP policy for discrete actions, evaluated with functional parameters.

The counterpart of ``metarl.core.policies.GaussianMLPPolicy`` for ``Discrete`` action spaces (the
bandits and tabular MDPs of RL^2, Duan et al. 2016, arXiv:1611.02779): an MLP maps the
observation to logits z, and pi(a | s) = softmax(z)_a. As there, the module only owns the
initial parameters and every evaluation is a pure function of a parameter dict, shared
(``weight [out, in]``) or stacked per task (``weight [N, out, in]`` with ``obs [N, M, obs]``,
one batched matmul over tasks). Actions are integer indices of shape ``logits.shape[:-1]``.

Besides log-probabilities, entropy and KL, this module gives the Gauss-Newton (Fisher) product
of the mean KL in closed form with respect to the logits (``categorical_fisher_product``) and,
through the chain rule, with respect to the parameters (``mean_kl_fisher_product``) -- what
TRPO's conjugate gradient needs (Schulman et al. 2015, arXiv:1502.05477, Appendix C).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.core.distributions import (
    Categorical,
    categorical_entropy,
    categorical_fisher_product,
    categorical_kl,
    categorical_log_prob,
)
from metarl.core.linalg import Params

__all__ = [
    "CategoricalMLPPolicy",
    "categorical_entropy",
    "categorical_fisher_product",
    "categorical_kl",
    "categorical_log_prob",
    "categorical_mlp",
    "mean_kl_fisher_product",
]

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
_CATEGORICAL = Categorical()


class CategoricalMLPPolicy(nn.Module):
    """pi(a | s) = softmax(z_theta(s))_a with an MLP z_theta over ``num_actions`` logits."""

    distribution: Categorical = _CATEGORICAL

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (known: tanh, relu)")
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        sizes = [obs_dim, *hidden_sizes, num_actions]
        layers = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        for layer in layers:  # Glorot-uniform weights, zero biases: as the Gaussian policy
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)
        self.activation = activation

    def forward(self, obs: Tensor) -> Tensor:
        return categorical_mlp(dict(self.named_parameters()), obs, self.activation)

    def initial_params(self) -> Params:
        """A detached copy of the module's parameters: the meta-parameters theta."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    def distribution_params(self, params: Params, obs: Tensor) -> tuple[Tensor]:
        """``(logits,)``, the logits ``[..., num_actions]`` of the policy with ``params`` at
        ``obs`` (a tuple, as every policy's distribution outputs are)."""
        return (categorical_mlp(params, obs, self.activation),)

    def log_prob(self, params: Params, obs: Tensor, actions: Tensor) -> Tensor:
        """log pi(a | s) for indices ``actions`` of shape ``obs.shape[:-1]``, or the rollouts'
        float indices ``[..., 1]``."""
        return self.distribution.log_prob(self.distribution_params(params, obs), actions)

    def entropy(self, params: Params, obs: Tensor) -> Tensor:
        return self.distribution.entropy(self.distribution_params(params, obs))

    def sample(
        self, params: Params, obs: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Action indices (int64, ``obs.shape[:-1]``) drawn from the policy at ``obs``."""
        logits = categorical_mlp(params, obs, self.activation)
        probabilities = torch.softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
        # multinomial takes one row per draw, so the leading dimensions are flattened and
        # restored; it draws where the generator lives, whatever the policy's device
        where = probabilities.device if generator is None else generator.device
        drawn = torch.multinomial(probabilities.to(where), 1, generator=generator)
        return drawn.reshape(logits.shape[:-1]).to(logits.device)


def categorical_mlp(params: Params, obs: Tensor, activation: str) -> Tensor:
    """Logits ``[..., A]`` as a pure function of ``params`` (names as in
    ``CategoricalMLPPolicy.named_parameters()``), shared or stacked per task."""
    act = _ACTIVATIONS[activation]
    num_layers = len(params) // 2
    x = obs
    for i in range(num_layers):
        weight, bias = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
        if weight.dim() == 2:
            x = F.linear(x, weight, bias)
        else:  # per task: [N, M, in] x [N, in, out] + [N, 1, out]
            x = torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))
        if i < num_layers - 1:
            x = act(x)
    return x


def mean_kl_fisher_product(
    policy: CategoricalMLPPolicy, params: Params, obs: Tensor, damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """``v -> (J^T H J + damping I) v`` for flat ``v`` over ``params`` (in their order): the
    Hessian of mean_s KL(pi_old(. | s) || pi_theta(. | s)) at theta = old (= ``params``).

    J is the Jacobian of all logits ``[..., A]`` at ``obs`` with respect to the parameters and H
    the block-diagonal ``categorical_fisher_product`` / S (S: all leading positions of the
    logits, tasks included). At theta = old the KL's gradient in the logits vanishes, so the
    chain rule's second-order term drops and J^T H J is the Hessian exactly (Martens 2014,
    arXiv:1412.1193, Sec. 9). J v comes from differentiating J^T u in a dummy u (two backward
    passes per product through a graph built once), so no Jacobian is ever formed.
    """
    leaves = [v.detach().requires_grad_(True) for v in params.values()]
    (logits,) = policy.distribution_params(dict(zip(params, leaves)), obs)
    states = logits.numel() // logits.shape[-1]
    old_logits = logits.detach()
    dummy = torch.zeros_like(logits, requires_grad=True)
    jt_dummy = torch.autograd.grad(logits, leaves, grad_outputs=dummy, create_graph=True)

    def product(vector: Tensor) -> Tensor:
        pieces, offset = [], 0
        for leaf in leaves:
            pieces.append(vector[offset : offset + leaf.numel()].view_as(leaf))
            offset += leaf.numel()
        if offset != vector.numel():
            raise ValueError(f"vector has {vector.numel()} entries, parameters need {offset}")
        (jv,) = torch.autograd.grad(jt_dummy, dummy, grad_outputs=pieces, retain_graph=True)
        hjv = categorical_fisher_product(old_logits, jv) / states
        jt = torch.autograd.grad(logits, leaves, grad_outputs=hjv, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in jt]) + damping * vector

    return product
