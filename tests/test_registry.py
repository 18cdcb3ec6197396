"""The learner and outer-step registries: the config check reads the learners' declarations,
and adding a learner is one class and one registry entry (a toy learner trains here)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from metarl.config import ConfigError, TrainConfig
from metarl.core.adaptation import adapt_step, per_task
from metarl.core.episodes import StepBatch
from metarl.core.linalg import Params
from metarl.core.maml import MetaBatch
from metarl.rl import learners
from metarl.rl.combination import check_combination
from metarl.rl.learners.base import Learner
from metarl.rl.meta_learner import MetaLearner
from metarl.rl.trainer import train


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"learner": "reptile"}, "learner reptile takes outer adam or sgd, not trpo"),
        ({"learner": "imaml", "outer": "promp"}, "learner imaml takes outer adam or sgd"),
        ({"learner": "fomaml", "estimator": "dice"}, "estimator dice"),
        ({"first_order": True, "estimator": "lvc"}, "estimator lvc"),
        ({"learner": "reptile", "outer": "sgd", "first_order": True}, "first_order applies"),
        ({"learner": "pretrained", "outer": "promp"},
         "learner pretrained takes outer trpo, adam or sgd, not promp"),
        ({"learner": "pretrained", "estimator": "lvc"}, "estimator lvc"),
    ],
)
def test_invalid_learner_combinations_are_rejected(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="invalid combination") as error:
        check_combination(TrainConfig(**fields))
    assert needle in str(error.value)


def test_valid_learner_combinations_pass() -> None:
    valid: list[dict[str, Any]] = [
        {}, {"learner": "reptile", "outer": "adam"}, {"learner": "imaml", "outer": "sgd"},
        {"learner": "fomaml", "outer": "promp"}, {"estimator": "dice"},
        {"learner": "pretrained"}, {"learner": "pretrained", "outer": "adam"},
    ]
    for fields in valid:
        check_combination(TrainConfig.from_dict(fields))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("learner", "mamll", "learner must be one of 'maml', 'fomaml', 'reptile', 'imaml', "
                         "'pretrained', got 'mamll'; did you mean maml?"),
    ("outer", "rmsprop", "outer must be one of 'trpo', 'adam', 'sgd', 'promp', got 'rmsprop'"),
])
def test_unknown_names_are_one_line_errors(field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_combination(TrainConfig.from_dict({field: value}))
    assert str(error.value) == message


def test_the_trainer_checks_the_combination_before_touching_the_run_dir(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="learner reptile takes outer adam or sgd"):
        train(TrainConfig(learner="reptile", iterations=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


class QueryGradient(Learner):
    """A toy learner: MAML's sampling-time adaptation, and as its direction the query
    surrogate's gradient at theta, the adaptation ignored (any direction will do here; the
    test only checks that the run uses it)."""

    name = "query_gradient"
    outer_steps: ClassVar[tuple[str, ...]] = ("adam",)
    calls: ClassVar[int] = 0

    def adapt_for_sampling(self, theta: Params, adapted: Params, support: StepBatch) -> Params:
        return adapt_step(self.objective.inner_loss, adapted, support, self.config.inner_lr)

    def direction(self, params: Params, batch: MetaBatch
                  ) -> tuple[Tensor, Params, dict[str, float]]:
        type(self).calls += 1
        tasks = batch.query.steps.mask.shape[0]

        def mean_query_loss(theta: Params) -> Tensor:
            return self.objective.outer_loss(per_task(theta, tasks), batch.query).mean()

        gradient, loss = torch.func.grad_and_value(mean_query_loss)(params)
        return loss.detach(), gradient, {"toy/calls": float(type(self).calls)}


def test_a_registered_toy_learner_trains(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setitem(learners.LEARNERS, QueryGradient.name, QueryGradient)
    config = TrainConfig(env_id="metarl/Navigation2D-v0", learner="query_gradient", outer="adam",
                         outer_lr=0.01, iterations=2, meta_batch_size=3, episodes_per_task=2,
                         horizon=5, hidden_sizes=(8,), torch_threads=1, log_interval=1)
    with pytest.raises(ConfigError, match="learner query_gradient takes outer adam, not trpo"):
        check_combination(TrainConfig(learner="query_gradient"))
    learner = MetaLearner(config)
    assert isinstance(learner.learner, QueryGradient)
    state = learner.initial_state()
    before = {k: v.clone() for k, v in state.params.items()}
    state, metrics = learner.iteration(state)
    assert metrics["toy/calls"] == 1.0
    assert any(not torch.equal(before[k], state.params[k]) for k in before)
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["iterations"] == 2
