"""The presets a finished search writes, so that `metarl train` retrains its best cell and, for
the comparison Auto-Meta reports (Kim et al. 2018, arXiv:1806.06927, Sec. 4), the hand-designed
4-block network at a similar parameter count with the same Reptile budget:

    metarl train OUT/retrain_cell.yaml --run-dir RUN_CELL && metarl eval RUN_CELL
    metarl train OUT/retrain_conv4.yaml --run-dir RUN_CONV4 && metarl eval RUN_CONV4

Both are the search's Reptile settings with ``retrain_iterations`` outer steps instead of a
candidate's short budget, validated every tenth of the run, and evaluated as the few-shot
suite's Omniglot presets are (600 meta-test tasks, 15 queries per class, 50 inner steps, the
Reptile paper's test-time count).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from metarl.autometa.config import SearchConfig
from metarl.fewshot.cell_network import Layout
from metarl.fewshot.config import FewShotConfig, save_fewshot_config
from metarl.fewshot.conv import Pool
from metarl.fewshot.omniglot_training import initial_conv_params

CONV4_POOL: Pool = "stride"  # as the search's stem and omniglot_5w1s_reptile_cpu.yaml


def conv4_parameters(ways: int, filters: int) -> int:
    """Parameters of the 4-block network with ``filters`` channels and a ``ways``-logit head."""
    params = initial_conv_params(ways, 0, CONV4_POOL, filters)
    return sum(v.numel() for v in params.values())


def matching_conv4_filters(ways: int, parameters: int) -> int:
    """The channel count whose 4-block network has the parameter count nearest ``parameters``
    (the smaller on a tie)."""
    return min(range(1, 129), key=lambda f: (abs(conv4_parameters(ways, f) - parameters), f))


def retrain_configs(config: SearchConfig, cell: str, parameters: int
                    ) -> dict[str, FewShotConfig]:
    """``{"cell": ..., "conv4": ...}``: `metarl train` configs of the found cell and of the
    parameter-matched 4-block network. The cell config is left out when the search's layout is
    not the one `metarl train` builds a cell network with (``Layout(filters)``)."""
    iterations = config.retrain_iterations
    base = dataclasses.replace(
        config.fewshot_config(), iterations=iterations, eval_tasks=600, eval_steps=50,
        eval_queries=15, val_interval=max(1, iterations // 10),
        checkpoint_interval=max(1, iterations // 10), log_interval=max(1, iterations // 100))
    configs = {"conv4": dataclasses.replace(
        base, pool=CONV4_POOL, filters=matching_conv4_filters(config.ways, parameters))}
    if config.layout == Layout(config.filters):
        configs["cell"] = dataclasses.replace(base, cell=cell)
    return configs


def write_retrain_presets(config: SearchConfig, out: Path, cell: str, parameters: int
                          ) -> list[Path]:
    """Write ``retrain_<name>.yaml`` into ``out`` for each of ``retrain_configs``."""
    paths = []
    for name, fewshot in retrain_configs(config, cell, parameters).items():
        path = out / f"retrain_{name}.yaml"
        save_fewshot_config(fewshot, path)
        paths.append(path)
    return sorted(paths)
