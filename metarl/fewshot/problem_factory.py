"""The few-shot ``Problem`` a config names: sinusoid regression, Omniglot with the 4-block
network, or Omniglot with a cell network found by ``metarl search`` (``cell`` set).

It sits above the problems it chooses between, so that none of them imports another.
"""

from __future__ import annotations

from metarl.fewshot.cell_network import Layout
from metarl.fewshot.cell_problem import CellProblem
from metarl.fewshot.cell_space import parse_cell
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.omniglot import load_omniglot
from metarl.fewshot.problems import OmniglotProblem, Problem, SinusoidProblem, omniglot_root


def build_problem(config: FewShotConfig) -> Problem:
    """The task family of ``config.problem`` (Omniglot loads its data here)."""
    if config.problem == "sinusoid":
        return SinusoidProblem(config)
    if config.cell:
        data = load_omniglot(omniglot_root(config.data_path))
        return CellProblem(config, data, parse_cell(config.cell), Layout(config.filters))
    return OmniglotProblem(config)
