"""The REINFORCE inner loss of a Gaussian MLP policy, its gradient and its Hessian-vector
products written out by hand (Pearlmutter's R-operator, Pearlmutter 1994, "Fast exact
multiplication by the Hessian", Neural Computation 6(1)).

Per task, ``L = sum_t c_t log pi(a_t | s_t)`` with ``c_t = -mask_t A_t / sum_t mask_t`` (the
``"maml"`` estimator's loss, ``metarl.core.estimators.reinforce_loss``), and
``log pi = sum_d [-(a_d - mu_d)^2 exp(-2 l_d) / 2 - l_d] + const`` for the MLP mean ``mu`` and
the state-independent log-std ``l`` (``metarl.core.policies.gaussian_mlp``). Its derivatives in
the distribution's outputs, with ``e = a - mu`` and ``r = exp(-2 l)``:

- ``dL/dmu = c e r`` and ``dL/dl = sum_t c (e^2 r - 1)``;
- along a direction with tangents ``R(mu)`` and ``v_l``:
  ``R(dL/dmu) = c r (-R(mu) - 2 e v_l)`` and ``R(dL/dl) = sum_t -2 c e r (R(mu) + e v_l)``.

Through each affine layer ``pre = x W^T + b`` and activation ``x' = f(pre)``, the backward pass
``g_W = delta^T x``, ``delta_prev = (delta W) * f'(pre_prev)`` has the tangents
``R(g_W) = R(delta)^T x + delta^T R(x)`` and
``R(delta_prev) = (R(delta) W + delta v_W) * f' + (delta W) * f'' * R(pre_prev)``
(``f'' = 0`` for ReLU, ``-2 tanh (1 - tanh^2)`` for tanh). The matrix products are the ones
autograd's double backward runs; what this saves is its element-wise passes and bookkeeping.
``tests/test_gaussian_mlp_hessian.py`` checks gradient and products against autograd in float64.

With ``dtype=torch.bfloat16`` the products' arithmetic runs in bfloat16 (8 significant bits,
float32's range): what they reuse of the forward and backward passes is rounded once when the
builder runs, each product rounds its vectors, and its result comes back in the vectors' dtype.
The gradient stays in the parameters' dtype. On CPUs with bfloat16 dot-product instructions
(AVX512-BF16) a product ran 2.2 to 2.4 times as fast as in float32, with a relative error of
2.5e-3 against float64 (docs/results/speed.md), far below the subsampling error of the curvature
they serve, and TRPO's line search checks each step's KL in the parameters' own precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from metarl.core.episodes import StepBatch
from metarl.core.inner_hessian import InnerHessianBuilder, InnerStepHessian
from metarl.core.linalg import Params

# oneDNN, which runs torch's bfloat16 matrix products on the CPU, compiles and keeps kernels for
# every new shape it meets, never freed (200 shapes of two products grew a process by 919 MB).
# Batches counted in steps have a different step count each time, so in bfloat16 the support is
# padded with masked steps to a multiple of this and a run meets few shapes.
BFLOAT16_STEP_MULTIPLE = 64


def padded_steps(support: StepBatch, multiple: int) -> StepBatch:
    """``support`` with masked, zero steps appended up to a multiple of ``multiple`` steps:
    their weight in the loss is zero, so its gradient and Hessian do not change."""
    extra = -support.mask.shape[-1] % multiple
    if extra == 0:
        return support
    return StepBatch(F.pad(support.observations, (0, 0, 0, extra)),
                     F.pad(support.actions, (0, 0, 0, extra)),
                     F.pad(support.advantages, (0, extra)), F.pad(support.mask, (0, extra)))


def gaussian_mlp_reinforce_hessian(activation: str, dtype: torch.dtype | None = None
                                   ) -> InnerHessianBuilder:
    """The builder for a ``GaussianMLPPolicy`` with ``activation`` (tanh or relu) under the
    REINFORCE loss; parameters are per task (``layers.i.weight [N, out, in]``). The products
    compute in ``dtype`` (None: the parameters' own)."""
    if activation not in ("tanh", "relu"):
        raise ValueError(f"unknown activation {activation!r} (known: tanh, relu)")

    def rounded(tensor: Tensor) -> Tensor:
        return tensor if dtype is None else tensor.to(dtype)

    def build(params: Params, support: StepBatch, with_products: bool) -> InnerStepHessian:
        del with_products  # the forward and backward passes serve the gradient and products
        if dtype is not None:
            support = padded_steps(support, BFLOAT16_STEP_MULTIPLE)
        params = {k: v.detach() for k, v in params.items()}
        names = list(params)
        layers = (len(names) - 1) // 2
        weights = [params[f"layers.{i}.weight"] for i in range(layers)]
        biases = [params[f"layers.{i}.bias"] for i in range(layers)]
        log_std = params["log_std"].unsqueeze(-2)  # [N, 1, act]

        # forward pass: each layer's input x_i, and f'(pre) / f''(pre) of the hidden layers
        inputs, slopes, curvatures = [support.observations], [], []
        x = support.observations
        for i in range(layers):
            pre = torch.baddbmm(biases[i].unsqueeze(-2), x, weights[i].transpose(-1, -2))
            if i == layers - 1:
                mean = pre
                break
            if activation == "relu":
                x = torch.relu(pre)
                slopes.append((pre > 0).to(pre.dtype))
            else:
                x = torch.tanh(pre)
                slope = 1 - x * x
                slopes.append(slope)
                curvatures.append(-2 * x * slope)
            inputs.append(x)

        mask = support.mask
        coef = (-mask * support.advantages / mask.sum(-1, keepdim=True).clamp(min=1.0)
                ).unsqueeze(-1)  # [N, M, 1]
        error = support.actions - mean
        precision = torch.exp(-2 * log_std)
        delta = coef * error * precision  # dL/dmu, [N, M, act]
        grad_log_std = (coef * (error * error * precision - 1)).sum(-2)

        # what every product reuses of the output's derivatives
        log_std_curvature = -2 * coef * error * precision  # d(dL/dl)/dmu
        mean_curvature = coef * precision  # -d(dL/dmu)/dmu
        # backward pass: delta_i (dL/dpre_i) and the upstream delta_i W_i of every hidden layer,
        # by layer index, from the last layer down
        deltas: dict[int, Tensor] = {}
        upstream: dict[int, Tensor] = {}
        gradient = {"log_std": grad_log_std}
        for i in reversed(range(layers)):
            gradient[f"layers.{i}.weight"] = torch.bmm(delta.transpose(-1, -2), inputs[i])
            gradient[f"layers.{i}.bias"] = delta.sum(-2)
            deltas[i] = delta
            if i > 0:
                upstream[i - 1] = torch.bmm(delta, weights[i])
                delta = upstream[i - 1] * slopes[i - 1]

        # what the products reuse, in their dtype; the output layer's terms stay as they are,
        # and only tanh's second derivative needs the upstream terms
        inputs = [rounded(x) for x in inputs]
        weights = [rounded(w) for w in weights]
        slopes = [rounded(x) for x in slopes]
        deltas = {i: rounded(x) for i, x in deltas.items()}
        if activation == "tanh":
            curvatures = [rounded(x) for x in curvatures]
            upstream = {i: rounded(x) for i, x in upstream.items()}

        def product(vectors: list[Tensor]) -> list[Tensor]:
            result_dtype = vectors[0].dtype
            v = {name: rounded(x) for name, x in zip(names, vectors)}
            v_w = [v[f"layers.{i}.weight"] for i in range(layers)]
            # R-forward: tangents of each layer's pre-activation and of its output
            pre_tangents: list[Tensor] = []
            x_tangents: list[Tensor | None] = [None]  # the observations do not move
            for i in range(layers):
                tangent = torch.baddbmm(v[f"layers.{i}.bias"].unsqueeze(-2), inputs[i],
                                        v_w[i].transpose(-1, -2))
                previous = x_tangents[i]
                if previous is not None:
                    tangent.baddbmm_(previous, weights[i].transpose(-1, -2))
                pre_tangents.append(tangent)
                if i < layers - 1:
                    x_tangents.append(tangent * slopes[i])
            mean_tangent = pre_tangents[-1].to(result_dtype)
            v_log_std = vectors[names.index("log_std")].unsqueeze(-2)
            hv = {"log_std": (log_std_curvature * (mean_tangent + error * v_log_std)).sum(-2)}
            delta_tangent = rounded(mean_curvature * (-mean_tangent - 2 * error * v_log_std))
            # R-backward
            for i in reversed(range(layers)):
                hw = torch.bmm(delta_tangent.transpose(-1, -2), inputs[i])
                previous = x_tangents[i]
                if previous is not None:
                    hw.baddbmm_(deltas[i].transpose(-1, -2), previous)
                hv[f"layers.{i}.weight"] = hw
                hv[f"layers.{i}.bias"] = delta_tangent.sum(-2)
                if i > 0:
                    back = torch.bmm(delta_tangent, weights[i]).baddbmm_(deltas[i], v_w[i])
                    back.mul_(slopes[i - 1])
                    if activation == "tanh":
                        back.add_(upstream[i - 1] * curvatures[i - 1] * pre_tangents[i - 1])
                    delta_tangent = back
            return [hv[name].to(result_dtype) for name in names]

        return InnerStepHessian([gradient[name] for name in names], product)

    return build
