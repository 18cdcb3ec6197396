"""Held-out evaluation of supervised runs: per-step scores against hand-computed adaptation
(SGD, iMAML's proximal steps, Reptile's Adam), ProtoNets' single accuracy, and the table."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from metarl.core.linalg import Params
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.evaluation import adaptation_kind, adaptation_scores, format_table, summarize
from metarl.fewshot.models import mlp
from metarl.fewshot.problems import SinusoidProblem, task_generator
from metarl.fewshot.protonet import prototype_logits


def _by_hand(config: FewShotConfig, theta: Params, batch: Any, task: int, steps: int
             ) -> list[float]:
    """One task's query MSE after 0..steps steps, adapted with plain autograd in float64.

    iMAML's steps descend L + lambda/2 |phi - theta|^2 with its safeguard: a step that raises
    that objective is undone and the rate halved."""
    sx, sy = batch.support_x[task].double(), batch.support_y[task].double()
    qx, qy = batch.query_x[task].double(), batch.query_y[task].double()
    start = {k: v.double() for k, v in theta.items()}
    phi = dict(start)
    first = {k: torch.zeros_like(v) for k, v in phi.items()}
    second = {k: torch.zeros_like(v) for k, v in phi.items()}
    lr = config.inner_lr

    def proximal_objective(p: Params) -> float:
        distance = sum(float(((p[k] - start[k]) ** 2).sum()) for k in p)
        return float(((mlp(p, sx) - sy) ** 2).mean()) + 0.5 * config.prox_lambda * distance

    accepted, accepted_value = phi, proximal_objective(phi)
    scores = []
    for step in range(steps + 1):
        if config.learner == "imaml" and step > 0:
            value = proximal_objective(phi)
            if value > accepted_value:
                phi, lr = accepted, lr / 2
            else:
                accepted, accepted_value = phi, value
        scores.append(float(((mlp(phi, qx) - qy) ** 2).mean()))
        if step == steps:
            break
        leaves = {k: v.clone().requires_grad_(True) for k, v in phi.items()}
        ((mlp(leaves, sx) - sy) ** 2).mean().backward()
        stepped = {}
        for k, leaf in leaves.items():
            assert leaf.grad is not None
            g = leaf.grad
            if config.learner == "imaml":  # gradient of L + lambda/2 |phi - theta|^2
                stepped[k] = phi[k] - lr * (g + config.prox_lambda * (phi[k] - start[k]))
            elif config.inner_optimizer == "adam":  # beta1 0, beta2 0.999, bias-corrected
                t = step + 1
                first[k] = g
                second[k] = 0.999 * second[k] + 0.001 * g * g
                stepped[k] = phi[k] - lr * first[k] / ((second[k] / (1 - 0.999**t)).sqrt() + 1e-8)
            else:
                stepped[k] = phi[k] - lr * g
        phi = stepped
    return scores


@pytest.mark.parametrize("changes", [
    {"learner": "maml"},
    {"learner": "scratch", "inner_lr": 0.05},
    {"learner": "imaml", "inner_lr": 0.05, "prox_lambda": 3.0},
    {"learner": "reptile", "inner_optimizer": "adam", "inner_lr": 0.02},
])
def test_scores_follow_the_learners_test_time_adaptation(changes: dict[str, object]) -> None:
    config = FewShotConfig(shots=5, eval_queries=7, **changes)  # type: ignore[arg-type]
    problem = SinusoidProblem(config)
    theta = problem.initial_params()
    scores = adaptation_scores(config, problem, theta, "test", 3, 4, task_generator(5, "test"))
    batch = problem.sample("test", 3, task_generator(5, "test"))  # the same tasks
    assert scores.shape == (5, 3)
    for task in range(3):
        expected = torch.tensor(_by_hand(config, theta, batch, task, 4), dtype=torch.float64)
        assert torch.allclose(scores[:, task].double(), expected, rtol=1e-4), (task, scores)
    if config.learner == "imaml":  # the proximal pull is real: plain SGD scores differ
        sgd = adaptation_scores(FewShotConfig(shots=5, eval_queries=7, inner_lr=0.05),
                                problem, theta, "test", 3, 4, task_generator(5, "test"))
        assert torch.equal(sgd[:2], scores[:2])  # phi = theta before and after the first step
        assert not torch.allclose(sgd[2:], scores[2:])
        # and the safeguard acts: task 0's second step raised its objective and was undone
        assert torch.equal(scores[2, 0], scores[1, 0]) and not torch.equal(sgd[2, 0], sgd[1, 0])


def test_tasks_are_evaluated_in_chunks_with_the_same_result() -> None:
    config = FewShotConfig()
    problem = SinusoidProblem(config)
    theta = problem.initial_params()
    whole = adaptation_scores(config, problem, theta, "test", 10, 2, task_generator(0, "test"))
    problem.eval_chunk = 3  # 3 + 3 + 3 + 1 tasks; the generator is drawn in the same order
    chunked = adaptation_scores(config, problem, theta, "test", 10, 2, task_generator(0, "test"))
    assert chunked.shape == (3, 10)
    assert not torch.equal(chunked, whole)  # different draws, same distribution ...
    assert torch.allclose(chunked[:, :3], adaptation_scores(
        config, problem, theta, "test", 3, 2, task_generator(0, "test")))  # ... and per chunk


def test_protonet_reports_one_nearest_prototype_accuracy() -> None:
    from metarl.fewshot.omniglot import synthetic_omniglot
    from metarl.fewshot.omniglot_training import initial_conv_params

    config = FewShotConfig(problem="omniglot", learner="protonet", ways=3, shots=2, queries=2,
                           eval_queries=4, eval_steps=0, pool="max", filters=6)

    class Tiny:  # the Omniglot problem on synthetic data, without a data folder
        metric, eval_chunk = "accuracy", 4

        def __init__(self) -> None:
            from metarl.fewshot.omniglot import OmniglotTasks

            self.tasks = OmniglotTasks(synthetic_omniglot(20), "test", 3, 2, 4)

        def sample(self, role: str, n: int, generator: torch.Generator) -> Any:
            return self.tasks.sample(n, generator)

    problem: Any = Tiny()
    theta = initial_conv_params(None, 0, "max", 6)
    scores = adaptation_scores(config, problem, theta, "test", 6, 5, task_generator(0, "test"))
    assert scores.shape == (1, 6)  # no inner steps, whatever is asked
    generator = task_generator(0, "test")
    batches = [problem.sample("test", 4, generator), problem.sample("test", 2, generator)]
    from metarl.fewshot.conv import conv4

    expected = []
    for batch in batches:
        for i in range(batch.support_x.shape[0]):
            images = torch.cat([batch.support_x[i], batch.query_x[i]])  # one batch-norm batch
            embedded = conv4(theta, images, "max")
            logits = prototype_logits(embedded[:6], batch.support_y[i], embedded[6:], 3)
            expected.append(float((logits.argmax(-1) == batch.query_y[i]).float().mean()))
    assert torch.allclose(scores[0], torch.tensor(expected))
    assert adaptation_kind(config) == "prototypes"


def test_summary_and_table() -> None:
    scores = torch.tensor([[0.2, 0.4, 0.6], [0.9, 1.0, 0.8]])
    mean, ci = summarize(scores)
    assert mean == pytest.approx([0.4, 0.9])
    assert ci[0] == pytest.approx(1.96 * 0.2 / 3**0.5)
    result = {"metric": "accuracy", "problem": "omniglot", "ways": 5, "shots": 1,
              "learner": "maml", "tasks": 3, "adaptation": "sgd", "checkpoint": "best",
              "checkpoint_iteration": 7, "steps": [0, 1], "mean": mean, "ci95": ci}
    table = format_table(result)
    assert "5-way 1-shot" in table and "accuracy %" in table
    assert table.splitlines()[-1].split() == ["1", "90.000", f"{100 * ci[1]:.3f}"]


def test_final_only_scores_equal_the_last_row() -> None:
    config = FewShotConfig(learner="imaml")
    problem = SinusoidProblem(config)
    theta = problem.initial_params()
    every = adaptation_scores(config, problem, theta, "val", 6, 3, task_generator(2, "val"))
    final = adaptation_scores(config, problem, theta, "val", 6, 3, task_generator(2, "val"),
                              final_only=True)
    assert final.shape == (1, 6) and torch.equal(final[0], every[-1])
    zero = adaptation_scores(config, problem, theta, "val", 6, 0, task_generator(2, "val"),
                             final_only=True)
    assert torch.equal(zero[0], every[0])
