import torch

from metarl.core.adaptation import per_task
from metarl.fewshot.cell_network import Layout, cell_network, initial_params, parameter_count
from metarl.fewshot.cell_space import parse_cell


def test_parameter_count_by_hand():
    f = 16
    cell = parse_cell("0:sep3+1:max3|2:sep5+1:id")
    params = initial_params(cell, ways=5, layout=Layout(f, 3, 1))
    sep3 = 9 * f + f * f + 2 * f  # depthwise, pointwise, norm scale and shift
    sep5 = 25 * f + f * f + 2 * f
    stem = 9 * f + 2 * f
    head = 5 * f + 5
    assert parameter_count(params) == stem + 3 * (sep3 + sep5) + head == 3621
    # parameter-free operators give parameter-free cells
    free = initial_params(parse_cell("0:max3+1:id"), 5, Layout(8, 2, 2))
    assert parameter_count(free) == 9 * 8 + 2 * 8 + 5 * 8 + 5


def test_shapes_shared_and_per_task_agree():
    cell = parse_cell("0:sep3+1:avg3|2:sep5+0:max3")
    params = initial_params(cell, ways=5, layout=Layout(8, 3, 1), seed=1)
    x = torch.rand(3, 4, 1, 28, 28)
    shared = torch.stack([cell_network(params, x[i], cell, Layout(8, 3, 1)) for i in range(3)])
    assert shared.shape == (3, 4, 5)
    stacked = cell_network(per_task(params, 3), x, cell, Layout(8, 3, 1))
    assert torch.allclose(stacked, shared, atol=1e-5)


def test_gradient_reaches_every_parameter():
    cell = parse_cell("0:sep3+1:sep5|2:sep3+1:id")
    layout = Layout(8, 2, 2)
    params = initial_params(cell, ways=5, layout=layout)
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 5

    def loss(p):
        return torch.nn.functional.cross_entropy(cell_network(p, x, cell, layout), y)

    grads = torch.func.grad(loss)(params)
    assert grads.keys() == params.keys()
    for name, g in grads.items():
        assert torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_same_seed_same_parameters():
    cell = parse_cell("0:sep3+1:id")
    a, b = initial_params(cell, 5, seed=3), initial_params(cell, 5, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.weight"], initial_params(cell, 5, seed=4)["stem.weight"])
