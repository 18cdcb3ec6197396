"""Run logging: TensorBoard scalars, a JSON-lines metrics file, stdout lines and a progress bar.

Library code returns metric dicts; only the training and evaluation drivers log them here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType

from tqdm import tqdm

# The metrics worth a stdout line; TensorBoard and metrics.jsonl get all of them.
ECHO_KEYS = ("support/return", "query/return", "outer/kl", "outer/ls_steps", "time/iteration_s")


class RunLogger:
    """Writes ``metrics.jsonl`` and TensorBoard events into ``run_dir``."""

    def __init__(self, run_dir: Path, total: int, progress: bool = True, initial: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow import; only when logging

        self.run_dir = run_dir
        # purge_step drops events a previous, resumed run logged after the resume point
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"),
                                    purge_step=initial + 1 if initial else None)
        config = run_dir / "config.yaml"
        if config.is_file() and not initial:  # the run's settings beside its curves
            text = config.read_text(encoding="utf-8")
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        self.jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.bar = tqdm(
            # a bar redrawn with carriage returns is noise in a log file: not a terminal, no bar
            # (the stdout lines every log_interval iterations still come)
            total=total, initial=initial, disable=not progress or not sys.stderr.isatty(),
            unit="it", dynamic_ncols=True,
            desc=self.description, file=sys.stderr,
        )

    echo_keys: tuple[str, ...] = ECHO_KEYS
    description = "meta-train"  # the progress bar's label

    def log(self, iteration: int, metrics: dict[str, float], echo: bool) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, iteration)
        self.jsonl.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
        self.jsonl.flush()
        self.bar.update(1)
        postfix = self.postfix(metrics)
        if postfix:
            self.bar.set_postfix(postfix)
        if echo:
            line = " ".join(f"{k}={_fmt(metrics[k])}" for k in self.echo_keys if k in metrics)
            self.bar.write(f"iter {iteration:5d} {line}")

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows: the returns before and after adaptation."""
        if "query/return" not in metrics:  # absent when a batch was skipped
            return {}
        return {"pre": f"{metrics['support/return']:.2f}", "post": f"{metrics['query/return']:.2f}"}

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
        self.jsonl.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
