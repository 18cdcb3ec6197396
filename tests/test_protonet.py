"""Prototypical Networks' logits and the 4-block network: closed forms on toys, shapes, and
per-task batching against a loop."""


import pytest
import torch

from metarl.fewshot.conv import ConvNet, conv4
from metarl.fewshot.omniglot import FewShotBatch
from metarl.fewshot.omniglot_training import initial_conv_params
from metarl.fewshot.protonet import protonet_logits, prototype_logits, prototypes


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


def test_protonet_logits_embed_each_task_as_one_batch_and_measure_squared_distances() -> None:
    g = torch.Generator().manual_seed(3)
    n, ways, shots, queries = 2, 3, 2, 4
    labels = torch.arange(ways).repeat(shots)
    batch = FewShotBatch(
        torch.rand(n, ways * shots, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.stack([labels[torch.randperm(ways * shots, generator=g)] for _ in range(n)]),
        torch.rand(n, queries, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.randint(0, ways, (n, queries), generator=g))
    params = {k: v.double() for k, v in initial_conv_params(None, 0, "max", filters=4).items()}
    logits = protonet_logits(params, batch, ways)
    assert logits.shape == (n, queries, ways)
    for i in range(n):
        # one batch-norm batch per task: its support and query images together
        embedded = conv4(params, torch.cat([batch.support_x[i], batch.query_x[i]]), "max")
        support, query = embedded[:ways * shots], embedded[ways * shots:]
        centres = torch.stack([support[batch.support_y[i] == c].mean(0) for c in range(ways)])
        by_hand = -((query[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        assert torch.allclose(logits[i], by_hand, atol=1e-10)
