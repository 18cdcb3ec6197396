"""Numerical guards: a NaN or inf stops an update before it is applied, naming the quantity."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


class NonFiniteError(ValueError):
    """A quantity of the training step holds NaN or inf; the message names it and where."""


def check_finite(name: str, values: Tensor | Mapping[str, Tensor] | Iterable[Tensor]) -> None:
    """Raise ``NonFiniteError`` if any entry of ``values`` (a tensor, a dict or a list of
    tensors) is NaN or infinite."""
    if isinstance(values, Tensor):
        items: list[tuple[str, Tensor]] = [("", values)]
    elif isinstance(values, Mapping):
        items = [(f"[{key}]", value) for key, value in values.items()]
    else:
        items = [(f"[{i}]", value) for i, value in enumerate(values)]
    for where, tensor in items:
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise NonFiniteError(f"{bad} non-finite value(s) in {name}{where} "
                                 f"(of {tensor.numel()}); the update was not applied")
