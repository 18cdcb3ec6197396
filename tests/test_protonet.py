"""Prototypical Networks and the 4-block network: closed forms on toys, shapes, per-task
batching against a loop, and a smoke train + evaluate on a tiny synthetic Omniglot."""


import pytest
import torch

from metarl.fewshot.conv import ConvNet, conv4
from metarl.fewshot.omniglot import FewShotBatch, synthetic_omniglot
from metarl.fewshot.omniglot_training import initial_conv_params
from metarl.fewshot.protonet import (
    evaluate_protonet,
    protonet_logits,
    protonet_loss,
    prototype_logits,
    prototypes,
    train_protonet,
)


def test_logits_match_a_hand_computation_on_a_two_way_toy() -> None:
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0])  # class 1: mean (1, 0); class 0: (0, 4)
    query = torch.tensor([[1.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    logits = prototype_logits(support, labels, query, 2)
    # ||(1,1)-(0,4)||^2 = 10, ||(1,1)-(1,0)||^2 = 1; ||(0,3)-(0,4)||^2 = 1, ||(0,3)-(1,0)||^2 = 10
    assert torch.allclose(logits, -torch.tensor([[10.0, 1.0], [1.0, 10.0]], dtype=torch.float64))
    assert torch.allclose(prototypes(support, labels, 2),
                          torch.tensor([[0.0, 4.0], [1.0, 0.0]], dtype=torch.float64))


def test_prototypes_follow_labels_not_positions() -> None:
    g = torch.Generator().manual_seed(1)
    n, ways, shots, d = 3, 4, 5, 6
    emb = torch.randn(n, ways * shots, d, generator=g, dtype=torch.float64)
    labels = torch.arange(ways).repeat_interleave(shots).expand(n, -1)
    expected = emb.reshape(n, ways, shots, d).mean(2)
    order = torch.stack([torch.randperm(ways * shots, generator=g) for _ in range(n)])
    shuffled_emb = emb.gather(1, order[..., None].expand(-1, -1, d))
    shuffled_labels = labels.gather(1, order)
    assert torch.allclose(prototypes(shuffled_emb, shuffled_labels, ways), expected)
    relabel = torch.stack([torch.randperm(ways, generator=g) for _ in range(n)])  # new names
    renamed = relabel.gather(1, shuffled_labels)
    got = prototypes(shuffled_emb, renamed, ways)
    assert torch.allclose(got.gather(1, relabel[..., None].expand(-1, -1, d)), expected)


@pytest.mark.parametrize("pool", ["max", "stride"])
def test_conv4_shapes_shared_and_per_task(pool) -> None:
    params = initial_conv_params(5, 0, pool, filters=8)
    assert conv4(params, torch.rand(7, 1, 28, 28), pool).shape == (7, 5)
    assert conv4(params, torch.rand(3, 7, 1, 28, 28), pool).shape == (3, 7, 5)
    stacked = {k: v.expand(3, *v.shape) for k, v in params.items()}
    assert conv4(stacked, torch.rand(3, 7, 1, 28, 28), pool).shape == (3, 7, 5)
    embedding = initial_conv_params(None, 0, pool, filters=8)
    assert "head.weight" not in embedding
    assert conv4(embedding, torch.rand(7, 1, 28, 28), pool).shape == (7, 8)
    net = ConvNet(5, filters=8, pool=pool)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    with pytest.raises(ValueError, match="per-task"):
        conv4(stacked, torch.rand(7, 1, 28, 28), pool)


@pytest.mark.parametrize("pool", ["max", "stride"])
@pytest.mark.parametrize("mode", ["grouped", "vmap", "loop"])
def test_per_task_forward_equals_a_loop_of_shared_forwards(pool, mode) -> None:
    g = torch.Generator().manual_seed(2)
    base = {k: v.double() for k, v in initial_conv_params(5, 0, pool, filters=6).items()}
    n = 3
    stacked = {k: v + 0.1 * torch.randn(n, *v.shape, generator=g, dtype=v.dtype)
               for k, v in base.items()}
    x = torch.rand(n, 4, 1, 28, 28, generator=g, dtype=torch.float64)
    expected = torch.stack([conv4({k: v[i] for k, v in stacked.items()}, x[i], pool)
                            for i in range(n)])
    assert torch.allclose(conv4(stacked, x, pool, mode), expected, atol=1e-10)
    # Shared parameters on [N, B, ...] normalise each task with its own statistics.
    shared = torch.stack([conv4(base, x[i], pool) for i in range(n)])
    assert torch.allclose(conv4(base, x, pool), shared, atol=1e-10)


def test_batch_norm_uses_batch_statistics() -> None:
    params = initial_conv_params(None, 0, "max", filters=4)
    x = torch.rand(6, 1, 28, 28) + 0.1
    # Statistics of the batch at hand: scaling the input is normalised away in the first block
    # (up to epsilon), and one image alone is normalised differently from a batch of six.
    assert torch.allclose(conv4(params, x), conv4(params, 3 * x), atol=1e-3)
    assert not torch.allclose(conv4(params, x)[:1], conv4(params, x[:1]), atol=1e-3)


def test_protonet_loss_is_per_task_and_matches_logits() -> None:
    g = torch.Generator().manual_seed(3)
    n, ways = 2, 3
    batch = FewShotBatch(torch.rand(n, ways, 1, 28, 28, generator=g),
                         torch.stack([torch.randperm(ways, generator=g) for _ in range(n)]),
                         torch.rand(n, 2 * ways, 1, 28, 28, generator=g),
                         torch.randint(0, ways, (n, 2 * ways), generator=g))
    params = initial_conv_params(None, 0, "max", filters=4)
    logits = protonet_logits(params, batch, ways)
    assert logits.shape == (n, 2 * ways, ways)
    loss = protonet_loss(params, batch, ways)
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[i], batch.query_y[i])
                            for i in range(n)])
    assert loss.shape == (n,) and torch.allclose(loss, expected)


def test_protonet_trains_and_evaluates_on_tiny_data() -> None:
    data = synthetic_omniglot()
    start = initial_conv_params(None, 0, "max", filters=8)
    seen = []
    params = train_protonet(data, ways=3, shots=1, queries=2, iterations=3, tasks_per_batch=2,
                            lr=1e-3, seed=0, train_ways=5, params=start,
                            callback=lambda i, m: seen.append((i, m["outer/loss"])))
    assert [i for i, _ in seen] == [0, 1, 2]
    assert set(params) == set(start) and any(not torch.equal(params[k], start[k]) for k in start)
    result = evaluate_protonet(params, data, ways=3, shots=1, tasks=20, queries=3, chunk_size=8)
    assert set(result) == {"accuracy", "ci95"}
    # The noisy templates are separable without training: far above chance (1/3).
    assert result["accuracy"] > 0.6 and 0 < result["ci95"] < 0.5
    with pytest.raises(ValueError, match="iterations"):
        train_protonet(data, iterations=0)
