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
after ``eval_steps`` inner steps), both through ``metarl.fewshot.cell_problem.CellProblem``.
Every candidate has the same seed, hence the same initialisation stream and the same tasks.

The search is a run of the shared loop (``metarl.run.loop``), one candidate per iteration: a
progress bar, ``metrics.jsonl`` and TensorBoard (each candidate's score), Ctrl-C at a candidate
boundary, and a ``max_minutes`` budget. Output folder: ``config.yaml``; ``results.jsonl``,
rewritten atomically (temporary file and rename) after every finished candidate; at the end
(or when stopped) ``results.json`` / ``results.csv`` (round, cell, blocks, parameters, score,
ci95, prediction, seconds), ``rounds.json`` (per round: cells trained, Spearman of prediction
against score), ``best_cell.txt``, ``search.png`` (every candidate's score by round),
``summary.json`` and the presets that retrain the best cell and a parameter-matched 4-block
network with `metarl train` (``retrain_cell.yaml``, ``retrain_conv4.yaml``;
``metarl.autometa.retrain``). Resuming: a search started again on the same folder with the
same config (``max_minutes`` may differ) reuses every finished candidate and retrains
nothing; since every step is seeded, the results equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from metarl.autometa.config import SearchConfig, load_search_config, save_search_config
from metarl.autometa.retrain import write_retrain_presets
from metarl.autometa.surrogate import MLPEnsemble, encode, encoding_size, spearman
from metarl.config import ConfigError, resolve_threads
from metarl.core.confidence import ci95
from metarl.fewshot.cell_network import parameter_count
from metarl.fewshot.cell_problem import CellProblem
from metarl.fewshot.cell_space import Cell, enumerate_cells, expand_cell, format_cell, parse_cell
from metarl.fewshot.evaluation import adaptation_scores
from metarl.fewshot.learners import initial_state, training_step
from metarl.fewshot.omniglot import OmniglotData, load_omniglot, synthetic_omniglot
from metarl.fewshot.problems import omniglot_root, task_generator
from metarl.run.atomic_write import write_json, write_text
from metarl.run.logger import RunLogger
from metarl.run.loop import LoopSettings, run_loop
from metarl.run.plots import plot_search
from metarl.run.resume import check_same_run, truncate_metrics

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
    """Create ``out`` or check that it holds a search of this very config (only
    ``max_minutes`` may change); the finished candidates it holds."""
    saved = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} exists and is not a folder")
    if saved.is_file():
        try:
            check_same_run(config.to_dict(), load_search_config(saved).to_dict(),
                           SearchConfig().to_dict(), RESUMABLE_CHANGES)
        except ValueError as error:
            raise ConfigError(f"{out} holds a search with another config ({error}); resume "
                              "it with its config.yaml or choose another --out") from None
    out.mkdir(parents=True, exist_ok=True)
    save_search_config(config, saved)
    return _read_results(out / "results.jsonl")


# Fields a resumed search may change: the budget changes no result.
RESUMABLE_CHANGES = frozenset({"max_minutes"})


def planned_candidates(config: SearchConfig) -> int:
    """Candidates the search trains at most (fewer if a round has fewer expansions)."""
    first = len(enumerate_cells(config.operators))
    if config.first_round:
        first = min(first, config.first_round)
    return first + (config.max_blocks - 1) * config.top_k


Candidate = tuple[int, Cell, float | None]  # round, cell, the surrogate's prediction


class SearchRun:
    """The search as the shared run loop drives it: one iteration trains and scores one
    candidate (or takes its score from an earlier session), and the plan of the next candidate
    (fitting the surrogate at a round's end) is made before the iteration ends."""

    def __init__(self, config: SearchConfig, out: Path, trainer: Trainer,
                 done: dict[tuple[int, str], dict[str, Any]]) -> None:
        self.config, self.out, self.trainer, self.done = config, out, trainer, done
        self.records: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.planned = planned_candidates(config)
        self.plan = self._candidates()
        self.next: Candidate | None = self._advance()

    @property
    def iteration(self) -> int:
        return len(self.records)

    @property
    def iterations(self) -> int:
        return self.planned

    def _advance(self) -> Candidate | None:
        candidate = next(self.plan, None)
        if candidate is None:
            self.planned = len(self.records)
        return candidate

    def _candidates(self) -> Iterator[Candidate]:
        """PNAS's progressive plan; each round's surrogate is fitted on every score so far."""
        c, ops = self.config, self.config.operators
        first = enumerate_cells(ops)
        if c.first_round and c.first_round < len(first):
            first = random.Random(c.seed).sample(first, c.first_round)
        for cell in first:
            yield 1, cell, None
        previous = self.records[-len(first):]
        self.rounds.append({"round": 1, "blocks": 1, "trained": len(previous), "spearman": None})
        for round_ in range(2, c.max_blocks + 1):
            surrogate = MLPEnsemble(encoding_size(c.max_blocks, ops), c.surrogate_members,
                                    c.surrogate_hidden, c.surrogate_epochs, seed=c.seed)
            cells = [parse_cell(r["cell"], ops) for r in self.records]
            surrogate.fit(encode(cells, c.max_blocks, ops),
                          torch.tensor([r["score"] for r in self.records], dtype=torch.float64))
            parents = sorted(previous, key=lambda r: (-r["score"], r["cell"]))[:c.beam]
            children = list(dict.fromkeys(child for r in parents
                                          for child in expand_cell(parse_cell(r["cell"], ops),
                                                                   ops)))
            predictions = surrogate.predict(encode(children, c.max_blocks, ops)).tolist()
            order = sorted(range(len(children)), key=lambda i: (-predictions[i], i))
            chosen = order[:c.top_k]
            self.planned = len(self.records) + len(chosen) + (c.max_blocks - round_) * c.top_k
            for i in chosen:
                yield round_, children[i], predictions[i]
            previous = self.records[-len(chosen):]
            rho = spearman(torch.tensor([r["prediction"] for r in previous]),
                           torch.tensor([r["score"] for r in previous]))
            self.rounds.append({"round": round_, "blocks": round_, "expansions": len(children),
                                "trained": len(previous), "surrogate_fitted_on": len(cells),
                                "spearman": None if rho != rho else rho})

    def step(self, budget_spent: Callable[[], bool]) -> dict[str, float]:
        assert self.next is not None, "the loop stops when the plan is done"
        round_, cell, prediction = self.next
        text = format_cell(cell)
        record = self.done.get((round_, text))
        if record is None:
            scored = self.trainer(cell)
            record = {"round": round_, "cell": text, "blocks": len(cell),
                      "parameters": scored.parameters, "score": scored.score,
                      "ci95": scored.ci95, "prediction": prediction, "seconds": scored.seconds,
                      "cpu_seconds": scored.cpu_seconds}
            lines = [json.dumps(r) for r in [*self.records, record]]
            write_text(self.out / "results.jsonl", "\n".join(lines) + "\n")
        self.records.append(record)
        self.next = self._advance()
        return {"search/round": float(round_), "search/score": record["score"],
                "search/ci95": record["ci95"],
                "search/best_score": max(r["score"] for r in self.records),
                "search/parameters": float(record["parameters"]),
                "time/iteration_s": record["seconds"],
                "time/iteration_cpu_s": record["cpu_seconds"]}

    def after_log(self, logger: RunLogger) -> None:
        pass

    def save_checkpoint(self, train_seconds: float) -> None:
        pass  # results.jsonl, rewritten after every candidate, is the search's checkpoint

    def summary(self) -> dict[str, Any]:
        return _finish(self.config, self.out, self.records, self.rounds)

    def plot(self, run_dir: Path) -> None:
        plot_search(run_dir / "search.png", self.records)


class SearchLogger(RunLogger):
    """The run logger with the search's scores on the progress bar and the stdout lines."""

    echo_keys = ("search/round", "search/score", "search/best_score", "time/iteration_s")
    description = "search"

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"best": f"{metrics['search/best_score']:.3f}"}


def run_search(config: SearchConfig, out: str | Path, trainer: Trainer | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the search into ``out``; returns the summary also in ``summary.json``.

    ``trainer`` defaults to ``reptile_trainer`` on the config's data (tests pass a cheap one).
    """
    out = Path(out)
    done = {(r["round"], r["cell"]): r for r in _prepare(config, out)}
    if trainer is None:
        torch.set_num_threads(resolve_threads(config.torch_threads))
        trainer = reptile_trainer(config, load_data(config))
    truncate_metrics(out / "metrics.jsonl", 0)  # a resumed search logs its candidates again
    settings = LoopSettings(config.max_minutes, log_interval=1, checkpoint_interval=1,
                            progress=progress,
                            resume_hint=f"metarl search {out / 'config.yaml'} --out {out}")
    seconds_before = sum(r["seconds"] for r in done.values())
    return run_loop(SearchRun(config, out, trainer, done), out, settings, seconds_before,
                    logger_class=SearchLogger)


def _finish(config: SearchConfig, out: Path, records: list[dict[str, Any]],
            rounds: list[dict[str, Any]]) -> dict[str, Any]:
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
    return {
        "best_cell": best["cell"],
        "best_score": best["score"],
        "best_ci95": best["ci95"],
        "best_parameters": best["parameters"],
        "candidates": len(records),
        "rounds": rounds,
        "train_seconds_total": sum(r["seconds"] for r in records),
        "train_cpu_seconds_total": sum(r["cpu_seconds"] for r in records),
        "retrain_presets": [str(path) for path in
                            write_retrain_presets(config, out, best["cell"], best["parameters"])],
    }


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
