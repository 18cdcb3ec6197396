"""The progressive search driver of Auto-Meta (Kim et al. 2018, arXiv:1806.06927, Sec. 3), after
PNAS (Liu et al. 2018, arXiv:1712.00559, Algorithm 1):

1. Round 1: every one-block cell (or a seeded sample of ``first_round``) is meta-trained with
   Reptile and scored on held-out validation tasks.
2. Round b = 2..max_blocks: the surrogate is refitted on every score so far; the ``beam`` best
   cells of round b - 1 are expanded by one block; the surrogate ranks the expansions and only
   its ``top_k`` are trained and scored. The round's Spearman correlation between the
   surrogate's predictions and the true scores of those cells is recorded.

A candidate's training is the few-shot suite's Reptile iteration
(``metarl.fewshot.learners.training_step``) and its score the suite's held-out adaptation
(``metarl.fewshot.evaluation.adaptation_scores``, mean query accuracy on the "val" characters
after ``eval_steps`` inner steps), both through ``metarl.autometa.problem.CellProblem``.
Every candidate has the same seed, hence the same initialisation stream and the same tasks.

Output folder: ``config.yaml``; ``results.jsonl``, rewritten atomically (temporary file and
rename) after every finished candidate; at the end ``results.json`` / ``results.csv`` (round,
cell, blocks, parameters, score, ci95, prediction, seconds), ``rounds.json`` (per round: cells
trained, Spearman of prediction against score), ``best_cell.txt``, ``summary.json`` and the
presets that retrain the best cell and a parameter-matched 4-block network with `metarl train`
(``retrain_cell.yaml``, ``retrain_conv4.yaml``; ``metarl.autometa.retrain``).
Resuming: a search started again on the same folder with the same config reuses every finished
candidate and retrains nothing; since every step is seeded, the results equal an uninterrupted
run's.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from metarl.atomic_write import write_json, write_text
from metarl.autometa.config import SearchConfig, load_search_config, save_search_config
from metarl.autometa.network import parameter_count
from metarl.autometa.problem import CellProblem
from metarl.autometa.retrain import write_retrain_presets
from metarl.autometa.space import Cell, enumerate_cells, expand_cell, format_cell, parse_cell
from metarl.autometa.surrogate import MLPEnsemble, encode, encoding_size, spearman
from metarl.confidence import ci95
from metarl.config import ConfigError, resolve_threads
from metarl.fewshot.evaluation import adaptation_scores
from metarl.fewshot.learners import initial_state, training_step
from metarl.fewshot.omniglot import OmniglotData, load_omniglot, synthetic_omniglot
from metarl.fewshot.problems import omniglot_root, task_generator

RESULT_FIELDS = ("round", "cell", "blocks", "parameters", "score", "ci95", "prediction",
                 "seconds", "cpu_seconds")


class Scored(NamedTuple):
    """What training one candidate gives."""

    score: float  # mean validation accuracy
    ci95: float
    parameters: int
    seconds: float
    cpu_seconds: float


Trainer = Callable[[Cell], Scored]


def load_data(config: SearchConfig) -> OmniglotData:
    if config.synthetic_characters:
        return synthetic_omniglot(config.synthetic_characters, config.seed)
    return load_omniglot(omniglot_root(config.data_path))


def reptile_trainer(config: SearchConfig, data: OmniglotData) -> Trainer:
    """Meta-train a cell's network with Reptile for ``config.iterations`` steps, then score it."""
    fewshot = config.fewshot_config()

    def train(cell: Cell) -> Scored:
        began, cpu_began = time.perf_counter(), time.process_time()
        problem, params = meta_train(config, data, cell)
        scores = adaptation_scores(fewshot, problem, params, "val", fewshot.val_tasks,
                                   fewshot.eval_steps, task_generator(fewshot.seed, "val"),
                                   final_only=True)[-1]
        return Scored(float(scores.mean()), ci95(scores), parameter_count(params),
                      time.perf_counter() - began, time.process_time() - cpu_began)

    return train


def meta_train(config: SearchConfig, data: OmniglotData, cell: Cell
               ) -> tuple[CellProblem, dict[str, torch.Tensor]]:
    """Reptile on the network of ``cell`` for ``config.iterations`` steps (the few-shot suite's
    ``training_step``); the problem and the meta-parameters."""
    fewshot = config.fewshot_config()
    problem = CellProblem(fewshot, data, cell, config.layout)
    state = initial_state(fewshot, problem.initial_params())
    generator = task_generator(fewshot.seed, "train")
    while state.iteration < fewshot.iterations:
        state, _ = training_step(fewshot, problem, state, generator)
    return problem, state.params


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            parse_cell(record["cell"])
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}:{number} is not a search result: {error}") from None
        records.append(record)
    return records


def _prepare(config: SearchConfig, out: Path) -> list[dict[str, Any]]:
    """Create ``out`` or check that it holds a search of this very config; the finished
    candidates it holds."""
    saved = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder")
    if saved.is_file():
        if load_search_config(saved).to_dict() != config.to_dict():
            raise ConfigError(f"{out} holds a search with another config; resume it with its "
                              "config.yaml or choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        save_search_config(config, saved)
    return _read_results(out / "results.jsonl")


def planned_candidates(config: SearchConfig) -> int:
    """Candidates the search trains at most (fewer if a round has fewer expansions)."""
    first = len(enumerate_cells(config.operators))
    if config.first_round:
        first = min(first, config.first_round)
    return first + (config.max_blocks - 1) * config.top_k


def run_search(config: SearchConfig, out: str | Path, trainer: Trainer | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the search into ``out``; returns the summary also in ``summary.json``.

    ``trainer`` defaults to ``reptile_trainer`` on the config's data (tests pass a cheap one).
    """
    out = Path(out)
    done = {(r["round"], r["cell"]): r for r in _prepare(config, out)}
    started = time.perf_counter()
    if trainer is None:
        torch.set_num_threads(resolve_threads(config.torch_threads))
        trainer = reptile_trainer(config, load_data(config))
    ops = config.operators
    records: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    bar = tqdm(total=planned_candidates(config), desc="search", unit="cell", disable=not progress)

    def evaluate(round_: int, cell: Cell, prediction: float | None) -> dict[str, Any]:
        text = format_cell(cell)
        record = done.get((round_, text))
        if record is None:
            scored = trainer(cell)
            record = {"round": round_, "cell": text, "blocks": len(cell),
                      "parameters": scored.parameters, "score": scored.score,
                      "ci95": scored.ci95, "prediction": prediction, "seconds": scored.seconds,
                      "cpu_seconds": scored.cpu_seconds}
            lines = [json.dumps(r) for r in [*records, record]]
            write_text(out / "results.jsonl", "\n".join(lines) + "\n")
        records.append(record)
        best = max(r["score"] for r in records)
        bar.update(1)
        bar.set_postfix(round=round_, best=f"{best:.3f}")
        return record

    try:
        first = enumerate_cells(ops)
        if config.first_round and config.first_round < len(first):
            first = random.Random(config.seed).sample(first, config.first_round)
        previous = [evaluate(1, cell, None) for cell in first]
        rounds.append({"round": 1, "blocks": 1, "trained": len(previous), "spearman": None})
        for round_ in range(2, config.max_blocks + 1):
            surrogate = MLPEnsemble(encoding_size(config.max_blocks, ops),
                                    config.surrogate_members, config.surrogate_hidden,
                                    config.surrogate_epochs, seed=config.seed)
            cells = [parse_cell(r["cell"], ops) for r in records]
            surrogate.fit(encode(cells, config.max_blocks, ops),
                          torch.tensor([r["score"] for r in records], dtype=torch.float64))
            parents = sorted(previous, key=lambda r: (-r["score"], r["cell"]))[:config.beam]
            children = list(dict.fromkeys(child for r in parents
                                          for child in expand_cell(parse_cell(r["cell"], ops),
                                                                   ops)))
            predictions = surrogate.predict(encode(children, config.max_blocks, ops)).tolist()
            order = sorted(range(len(children)), key=lambda i: (-predictions[i], i))
            chosen = order[:config.top_k]
            previous = [evaluate(round_, children[i], predictions[i]) for i in chosen]
            rho = spearman(torch.tensor([r["prediction"] for r in previous]),
                           torch.tensor([r["score"] for r in previous]))
            rounds.append({"round": round_, "blocks": round_, "expansions": len(children),
                           "trained": len(previous), "surrogate_fitted_on": len(cells),
                           "spearman": None if rho != rho else rho})
    finally:
        bar.close()
    return _finish(config, out, records, rounds, time.perf_counter() - started)


def _finish(config: SearchConfig, out: Path, records: list[dict[str, Any]],
            rounds: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    write_json(out / "results.json", records)
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows(records)
    os.replace(tmp, out / "results.csv")
    write_json(out / "rounds.json", rounds)
    best = max(records, key=lambda r: (r["score"], -r["parameters"]))
    write_text(out / "best_cell.txt", best["cell"] + "\n")
    summary = {
        "best_cell": best["cell"],
        "best_score": best["score"],
        "best_ci95": best["ci95"],
        "best_parameters": best["parameters"],
        "candidates": len(records),
        "rounds": rounds,
        "search_seconds_this_session": seconds,
        "train_seconds_total": sum(r["seconds"] for r in records),
        "train_cpu_seconds_total": sum(r["cpu_seconds"] for r in records),
        "retrain_presets": [str(path) for path in
                            write_retrain_presets(config, out, best["cell"], best["parameters"])],
    }
    write_json(out / "summary.json", summary)
    return summary


def format_results(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The results table, best first, and each round's rank correlation."""
    lines = [f"{'round':>5}  {'params':>7}  {'score %':>8}  {'ci95':>6}  {'predicted':>9}  cell"]
    for r in sorted(records, key=lambda r: -r["score"]):
        predicted = "-" if r["prediction"] is None else f"{100 * r['prediction']:.2f}"
        lines.append(f"{r['round']:>5}  {r['parameters']:>7}  {100 * r['score']:>8.2f}  "
                     f"{100 * r['ci95']:>6.2f}  {predicted:>9}  {r['cell']}")
    for round_ in summary["rounds"]:
        if round_["round"] > 1:
            rho = round_["spearman"]
            lines.append(f"round {round_['round']}: surrogate Spearman "
                         f"{'n/a' if rho is None else f'{rho:.3f}'} over {round_['trained']} "
                         f"cells (of {round_['expansions']} expansions)")
    lines.append(f"best cell: {summary['best_cell']} ({100 * summary['best_score']:.2f} %, "
                 f"{summary['best_parameters']} parameters)")
    return "\n".join(lines)
