"""The action distributions a policy can have: a diagonal Gaussian and a categorical.

Everything the learners and the outer steps need from a policy's distribution goes through a
``Distribution``: the log-probability of actions, the per-step KL divergence between an old and
a new distribution, the entropy, sampling from noise drawn beforehand, and the KL's Hessian in
the distribution's outputs applied to a vector (what TRPO's Gauss-Newton product needs). A
distribution's outputs ("dist params") are a tuple of tensors, what the policy's
``distribution_params`` returns: ``(mean, log_std)`` for the Gaussian, ``(logits,)`` for the
categorical.

Actions are stored as float tensors ``[..., act_dim]`` whatever the distribution: a discrete
action is its integer index as a float, ``[..., 1]``, which the categorical turns back into an
index for its log-probability.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from metarl.core.linalg import Params

DistParams = tuple[Tensor, ...]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Distribution(ABC):
    """An action distribution, stateless: every method is a pure function of its arguments."""

    name: str

    @abstractmethod
    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:
        """log pi(a) per step, ``actions`` as a rollout stores them (``[..., act_dim]``)."""

    @abstractmethod
    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        """KL(old || new) per step."""

    @abstractmethod
    def entropy(self, dist: DistParams) -> Tensor:
        """The entropy per step."""

    @abstractmethod
    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        """The noise for ``shape = [..., act_dim]`` actions, to be turned into actions by
        ``sample``: a rollout draws it per task from the task's own seed. It is drawn on the
        generator's device (the CPU's global stream without one), wherever the policy runs,
        so that a seed gives the same actions on every device."""

    @abstractmethod
    def sample(self, dist: DistParams, noise: Tensor) -> Tensor:
        """Actions ``[..., act_dim]`` (floats) from ``noise`` as ``draw_noise`` gives it."""

    @abstractmethod
    def mode(self, dist: DistParams) -> Tensor:
        """The most likely actions ``[..., act_dim]`` (floats), as ``sample`` shapes them."""

    @abstractmethod
    def kl_hessian_product(self, old: DistParams, weights: Tensor,
                           vectors: Sequence[Tensor]) -> list[Tensor]:
        """H v for the Hessian H of ``sum_steps weights * KL(old || new)`` in the outputs of
        ``new`` at ``new = old``: ``vectors`` has one tensor per output, shaped like it, and so
        does the result. ``weights`` has the steps' shape (the outputs' leading dimensions)."""


class DiagonalGaussian(Distribution):
    """N(mean, diag(exp(log_std))^2); ``log_std`` broadcasts against ``mean``."""

    name = "gaussian"

    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:
        mean, log_std = dist
        return gaussian_log_prob(mean, log_std, actions)

    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        return gaussian_kl(old[0], old[1], new[0], new[1])

    def entropy(self, dist: DistParams) -> Tensor:
        mean, log_std = dist
        return (log_std + 0.5 + _LOG_SQRT_2PI).expand_as(mean).sum(-1)

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        return torch.randn(tuple(shape), generator=generator, device=_noise_device(generator))

    def sample(self, dist: DistParams, noise: Tensor) -> Tensor:
        mean, log_std = dist
        return mean + log_std.exp() * noise.to(device=mean.device, dtype=mean.dtype)

    def mode(self, dist: DistParams) -> Tensor:
        return dist[0]

    def kl_hessian_product(self, old: DistParams, weights: Tensor,
                           vectors: Sequence[Tensor]) -> list[Tensor]:
        """The KL's Hessian is diagonal: ``w / var`` for each mean and, since the log-std is
        one output shared by the steps it broadcasts over, ``2 sum w`` over those steps."""
        mean, log_std = old
        w = weights.unsqueeze(-1)
        mean_part = w * torch.exp(-2 * log_std) * vectors[0]
        log_std_weight = (2 * w).expand_as(mean).sum_to_size(log_std.shape)
        return [mean_part, log_std_weight * vectors[1]]


class Categorical(Distribution):
    """softmax(logits) over ``logits.shape[-1]`` actions; sampled by the inverse CDF of one
    uniform per action."""

    name = "categorical"

    def log_prob(self, dist: DistParams, actions: Tensor) -> Tensor:
        (logits,) = dist
        if actions.shape == logits.shape[:-1] + (1,):  # the rollouts' float [..., 1] indices
            actions = actions.squeeze(-1)
        return categorical_log_prob(logits, actions.long())

    def kl(self, old: DistParams, new: DistParams) -> Tensor:
        return categorical_kl(old[0], new[0])

    def entropy(self, dist: DistParams) -> Tensor:
        return categorical_entropy(dist[0])

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        return torch.rand(tuple(shape), generator=generator, device=_noise_device(generator))

    def sample(self, dist: DistParams, noise: Tensor) -> Tensor:
        """Index a with ``cdf(a - 1) <= u < cdf(a)``: the number of cumulative probabilities
        at or below u (clamped, against a last cumulative sum rounded below 1)."""
        (logits,) = dist
        cdf = torch.softmax(logits, dim=-1).cumsum(-1)
        u = noise.to(device=cdf.device, dtype=cdf.dtype)  # [..., 1]
        index = (cdf <= u).sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
        return index.to(logits.dtype)

    def mode(self, dist: DistParams) -> Tensor:
        (logits,) = dist
        return logits.argmax(-1, keepdim=True).to(logits.dtype)

    def kl_hessian_product(self, old: DistParams, weights: Tensor,
                           vectors: Sequence[Tensor]) -> list[Tensor]:
        """Per step ``w * F u`` with F = diag(p) - p p^T (``categorical_fisher_product``)."""
        return [weights.unsqueeze(-1) * categorical_fisher_product(old[0], vectors[0])]


def _noise_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


class Policy(Protocol):
    """What the learners need of a policy: its distribution, and that distribution's outputs
    as a pure function of a parameter dict (shared, or stacked per task)."""

    @property
    def distribution(self) -> Distribution: ...

    def initial_params(self) -> Params: ...

    def distribution_params(self, params: Params, obs: Tensor) -> DistParams: ...

    def log_prob(self, params: Params, obs: Tensor, actions: Tensor) -> Tensor: ...


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """Log-density of a diagonal Gaussian, summed over the last (action) dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_kl(
    mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor
) -> Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the action dimension."""
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mahalanobis = ((mean_p - mean_q) * torch.exp(-log_std_q)).pow(2)
    return (0.5 * (var_ratio + mahalanobis - 1) - (log_std_p - log_std_q)).sum(-1)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a) = z_a - logsumexp(z), for integer ``actions`` of shape ``logits.shape[:-1]``."""
    if actions.shape != logits.shape[:-1]:
        raise ValueError(f"actions have shape {tuple(actions.shape)}, expected "
                         f"{tuple(logits.shape[:-1])} (one index per row of logits)")
    log_p = torch.log_softmax(logits, dim=-1)
    return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """H(p) = -sum_a p_a log p_a with p = softmax(logits) (finite logits)."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def categorical_kl(old_logits: Tensor, new_logits: Tensor) -> Tensor:
    """KL(p_old || p_new) = sum_a p_old,a (log p_old,a - log p_new,a), per row."""
    log_p_old = torch.log_softmax(old_logits, dim=-1)
    log_p_new = torch.log_softmax(new_logits, dim=-1)
    return (log_p_old.exp() * (log_p_old - log_p_new)).sum(-1)


def categorical_fisher_product(logits: Tensor, vector: Tensor) -> Tensor:
    """F v per state, F = diag(p) - p p^T the Fisher matrix of softmax(z) in the logits.

    Derivation: KL(p_old || softmax(z)) = sum_a p_old,a log p_old,a - p_old . z + logsumexp(z),
    whose Hessian in z is that of logsumexp, d softmax(z) / dz = diag(p) - p p^T; at z = z_old
    it is the Fisher matrix, so F v = p * v - p (p . v). The Hessian of the *mean* KL over S
    states with respect to all logits is block-diagonal with blocks F_s / S. ``logits`` and
    ``vector`` are ``[..., A]``; the result has their shape.
    """
    p = torch.softmax(logits, dim=-1)
    return p * vector - p * (p * vector).sum(-1, keepdim=True)
