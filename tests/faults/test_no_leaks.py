"""No leaked workers: the throughput benchmark's vector environments are closed however it ends,
and a stalled AsyncVectorEnv worker is terminated rather than awaited."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import gymnasium
import pytest

import metarl.rl.throughput
from metarl.config import TrainConfig
from metarl.run.watchdog import StallError

pytestmark = pytest.mark.faults

CONFIG = TrainConfig(meta_batch_size=1, episodes_per_task=2, horizon=3, hidden_sizes=(4,),
                     torch_threads=1, rollout_timeout_s=2)


def _fail_on_async(monkeypatch: pytest.MonkeyPatch, fault: str) -> list[Any]:
    closed: list[Any] = []
    real_close = gymnasium.vector.AsyncVectorEnv.close
    real_rate = metarl.rl.throughput._steps_per_second

    def close(self: Any, **kwargs: Any) -> None:
        closed.append(kwargs)
        real_close(self, **kwargs)

    def rate(env: Any, act: Any, horizon: int) -> float:
        if isinstance(env, gymnasium.vector.AsyncVectorEnv):
            env.reset(seed=0)
            env.step_async(env.action_space.sample())  # a step is in flight in the worker
            if fault == "error":
                raise RuntimeError("injected")
            time.sleep(3600)
        return real_rate(env, act, horizon)

    monkeypatch.setattr(gymnasium.vector.AsyncVectorEnv, "close", close)
    monkeypatch.setattr(metarl.rl.throughput, "_steps_per_second", rate)
    return closed


@pytest.mark.filterwarnings("ignore:.*pending call")
@pytest.mark.parametrize(("fault", "error"), [("error", RuntimeError), ("stall", StallError)])
def test_async_workers_are_ended_on_an_error_or_a_stall(
    monkeypatch: pytest.MonkeyPatch, fault: str, error: type[Exception]
) -> None:
    closed = _fail_on_async(monkeypatch, fault)
    start = time.monotonic()
    with pytest.raises(error) as raised:
        metarl.rl.throughput.run_throughput(CONFIG, async_envs=1)
    assert time.monotonic() - start < 60
    # ``raised`` keeps the traceback, hence the environment, alive: its worker must be gone
    # because the benchmark ended it, not because the garbage collector did
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []
    assert closed == [{"terminate": True}]
    assert raised.traceback
