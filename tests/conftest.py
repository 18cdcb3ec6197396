"""Shared test setup: one torch thread, so tests neither fight over cores nor vary with them."""

import torch

torch.set_num_threads(1)
