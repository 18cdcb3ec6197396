"""Supervised few-shot learning: task samplers (Omniglot) that return whole task batches."""

from metarl.fewshot.omniglot import (
    FewShotBatch,
    OmniglotData,
    OmniglotTasks,
    load_omniglot,
    split_characters,
)

__all__ = ["FewShotBatch", "OmniglotData", "OmniglotTasks", "load_omniglot", "split_characters"]
