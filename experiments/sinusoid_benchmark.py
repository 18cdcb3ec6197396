"""Sinusoid regression benchmark (Finn et al. 2017, arXiv:1703.03400, Sec. 5.1; protocol in
REFERENCE.md section 4): meta-train each learner with K = 10 shots, then fine-tune on 600
held-out tasks and report the query MSE after 0, 1 and 10 SGD steps with 95 % intervals.

    python experiments/sinusoid_benchmark.py --iterations 20000 --learners maml pretrained

Prints one progress line per ``--log-every`` iterations to stderr, then a markdown table and
the same rows as JSON on stdout (also written to ``--json`` if given). The paper reports, for
MAML at K = 10, roughly 0.3-0.5 after one step; the pretrained baseline stays near 1.5-2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from metarl.fewshot.supervised import LEARNERS, evaluate_sinusoid, train_sinusoid

REPORTED_STEPS = (0, 1, 10)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--learners", nargs="+", default=["maml", "pretrained"], choices=LEARNERS)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--meta-batch-size", type=int, default=25)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--inner-steps", type=int, default=1,
                        help="training inner steps (Reptile gets max(this, 5))")
    parser.add_argument("--outer-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-tasks", type=int, default=600)
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--eval-inner-lrs", type=float, nargs="+", default=[0.01],
                        help="fine-tuning rates at test time; one row per learner and rate")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows: list[dict[str, Any]] = []
    for learner in args.learners:
        inner_steps = max(args.inner_steps, 5) if learner == "reptile" else args.inner_steps
        window: list[float] = []

        def log(iteration: int, metrics: dict[str, float], learner: str = learner,
                window: list[float] = window) -> None:
            window.append(metrics["outer/loss"])
            if (iteration + 1) % args.log_every == 0:
                print(f"{learner} {iteration + 1}: outer/loss {sum(window) / len(window):.3f}",
                      file=sys.stderr, flush=True)
                window.clear()

        start = time.perf_counter()
        params = train_sinusoid(learner, args.iterations, args.meta_batch_size, args.shots,
                                args.inner_lr, inner_steps, args.outer_lr, args.seed,
                                callback=log)
        minutes = (time.perf_counter() - start) / 60
        for lr in args.eval_inner_lrs:
            metrics = evaluate_sinusoid(params, args.eval_tasks, args.shots, max(REPORTED_STEPS),
                                        lr, args.eval_seed)
            row: dict[str, Any] = {"learner": learner, "iterations": args.iterations,
                                   "train_inner_steps": inner_steps, "eval_inner_lr": lr,
                                   "minutes": round(minutes, 2)}
            for s in REPORTED_STEPS:
                row[f"mse_{s}"] = round(metrics[f"query/mse_{s}"], 4)
                row[f"mse_{s}_ci95"] = round(metrics[f"query/mse_{s}_ci95"], 4)
            rows.append(row)

    header = ["learner", *(f"MSE after {s}" for s in REPORTED_STEPS), "eval lr", "minutes",
              "iterations"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        cells = [row["learner"],
                 *(f"{row[f'mse_{s}']:.3f} ± {row[f'mse_{s}_ci95']:.3f}" for s in REPORTED_STEPS),
                 str(row["eval_inner_lr"]), f"{row['minutes']:.1f}", str(row["iterations"])]
        print("| " + " | ".join(cells) + " |")
    text = json.dumps(rows, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
