import random

import pytest
import torch

from metarl.autometa.surrogate import MLPEnsemble, encode, encoding_size, ranks, spearman
from metarl.fewshot.cell_space import enumerate_cells, expand_cell, parse_cell


def test_spearman_against_hand_values():
    a, b = torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 3, 2, 4])
    assert spearman(a, b) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1.0)
    assert ranks(torch.tensor([5.0, 1, 5, 2])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_encoding_by_hand():
    cell = parse_cell("0:sep3+1:id|2:max3+1:id")
    x = encode([cell], max_blocks=3)
    assert x.shape == (1, encoding_size(3)) == (1, 4 * 5 + 1)
    expected = torch.zeros(21, dtype=torch.float64)
    expected[0 * 5 + 0] = 0.5  # (input 0, sep3)
    expected[1 * 5 + 4] = 1.0  # (input 1, id) in both blocks
    expected[2 * 5 + 2] = 0.5  # (input 2, max3)
    expected[-1] = 2 / 3
    assert torch.equal(x[0], expected)
    with pytest.raises(ValueError):
        encode([cell], max_blocks=1)


def test_ensemble_ranks_a_known_function_of_the_encoding():
    rng = random.Random(0)
    cells = enumerate_cells()
    two = [child for cell in cells for child in expand_cell(cell)]
    sample = rng.sample(cells, 40) + rng.sample(two, 120)
    x = encode(sample, 2)
    w = torch.randn(x.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = x @ w + 0.5 * torch.tanh(x @ w) ** 2
    model = MLPEnsemble(x.shape[1], members=3, epochs=300).fit(x[:80], y[:80])
    assert spearman(model.predict(x[80:]), y[80:]) > 0.8
    # an unfitted predictor or one fed bad shapes refuses
    with pytest.raises(RuntimeError):
        MLPEnsemble(x.shape[1]).predict(x)
    with pytest.raises(ValueError):
        MLPEnsemble(x.shape[1]).fit(x[:1], y[:1])
