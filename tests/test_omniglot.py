"""Omniglot loading, split and task sampling on a tiny synthetic Omniglot (6 + 4 characters).

The same random 105x105 drawings are written both as the NumPy archives and as the original
release's PNG folders; sampled images are traced back to their (character, drawer, rotation) by
exact lookup, which checks splits, drawers and rotations without trusting the sampler.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils._pytree import tree_map

from metarl.fewshot.omniglot import (
    FewShotBatch,
    OmniglotTasks,
    area_resize_strokes,
    default_root,
    load_omniglot,
    split_characters,
)

N_BACKGROUND, N_EVALUATION, DRAWERS, SIDE = 6, 4, 20, 105
ALPHABETS = {"images_background": ("Greek", "Latin"), "images_evaluation": ("Runic", "Tifinagh")}


def _write_npz(folder: Path, parts: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, images in parts.items():
        labels = np.repeat(np.arange(len(images))[:, None], DRAWERS, axis=1)
        np.savez(folder / f"{name}.npz", images=images, labels=labels)


def _write_png(folder: Path, parts: dict[str, np.ndarray]) -> None:
    for name, images in parts.items():
        per_alphabet = len(images) // 2
        # Created in reverse so that the loader's name order, not the creation order, counts.
        for c in reversed(range(len(images))):
            alphabet = ALPHABETS[name][c // per_alphabet]
            character = folder / name / alphabet / f"character{c % per_alphabet + 1:02d}"
            character.mkdir(parents=True)
            for d in reversed(range(DRAWERS)):
                mode_1 = Image.fromarray(images[c, d])  # bool -> mode "1", like the release
                mode_1.save(character / f"{c + 1:04d}_{d + 1:02d}.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(npz folder, png folder, raw bool images [10, 20, 105, 105], True = background)."""
    rng = np.random.default_rng(0)
    raw = rng.random((N_BACKGROUND + N_EVALUATION, DRAWERS, SIDE, SIDE)) < 0.8
    parts = {"images_background": raw[:N_BACKGROUND], "images_evaluation": raw[N_BACKGROUND:]}
    base = tmp_path_factory.mktemp("omniglot")
    _write_npz(base / "npz", parts)
    _write_png(base / "png", parts)
    return base / "npz", base / "png", raw


@pytest.fixture(scope="module")
def lookup(tiny) -> dict[bytes, tuple[int, int, int]]:
    """Every resized image, rotated by k * 90 degrees -> (character, drawer, k)."""
    images = load_omniglot(tiny[0]).images
    table = {}
    for c in range(images.shape[0]):
        for d in range(images.shape[1]):
            for k in range(4):
                table[torch.rot90(images[c, d], k, dims=(-2, -1)).numpy().tobytes()] = (c, d, k)
    assert len(table) == images.shape[0] * images.shape[1] * 4  # all distinct
    return table


def _trace(x: torch.Tensor, table: dict[bytes, tuple[int, int, int]]) -> np.ndarray:
    """``[N, M, 1, S, S]`` images -> ``[N, M, 3]`` (character, drawer, rotation)."""
    n, m = x.shape[:2]
    return np.array([table[x[i, j].numpy().tobytes()] for i in range(n) for j in range(m)]
                    ).reshape(n, m, 3)


# Loading ---------------------------------------------------------------------------------------


def test_archives_and_png_folders_load_to_identical_tensors(tiny) -> None:
    npz, png, raw = tiny
    a, b = load_omniglot(npz), load_omniglot(png)
    assert (a.layout, b.layout) == ("npz", "png")
    assert a.images.shape == (10, DRAWERS, 1, 28, 28) and a.images.dtype == torch.float32
    assert a.n_background == b.n_background == N_BACKGROUND
    assert torch.equal(a.images, b.images)
    assert a.images.min() >= 0 and a.images.max() <= 1
    # Strokes are 1 and area averaging keeps the mean: image mean = fraction of stroke pixels.
    strokes = torch.from_numpy(~raw).double().mean((-2, -1))
    assert torch.allclose(a.images.double().mean((-3, -2, -1)), strokes, atol=1e-6)


def test_area_resize_is_the_exact_area_mean() -> None:
    g = torch.Generator().manual_seed(0)
    background = torch.rand(3, SIDE, SIDE, generator=g) < 0.5
    strokes = (~background).double()
    # 105 = 28 * 15 / 4: upsampling 4x and averaging 15x15 blocks is the exact area mean.
    fine = strokes.repeat_interleave(4, -1).repeat_interleave(4, -2)
    expected = F.avg_pool2d(fine[:, None], 15)[:, 0]
    assert torch.allclose(area_resize_strokes(background, 28).double(), expected, atol=1e-6)
    whole = F.avg_pool2d(strokes[:, None], 3)[:, 0]  # an integer factor: plain block means
    assert torch.allclose(area_resize_strokes(background, 35).double(), whole, atol=1e-6)


def test_loads_are_cached_in_memory(tiny) -> None:
    assert load_omniglot(tiny[0]).images is load_omniglot(str(tiny[0])).images
    assert load_omniglot(tiny[0], image_size=14).images.shape[-1] == 14


def test_metarl_data_names_the_parent_of_omniglot(tiny, tmp_path, monkeypatch) -> None:
    (tmp_path / "omniglot").symlink_to(tiny[0], target_is_directory=True)
    monkeypatch.setenv("METARL_DATA", str(tmp_path))
    assert default_root() == tmp_path / "omniglot"
    data = load_omniglot()
    assert data.root == tiny[0].resolve()
    assert torch.equal(data.images, load_omniglot(tiny[0]).images)


def test_missing_data_says_where_and_what(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("METARL_DATA", str(tmp_path))
    for call in (load_omniglot, lambda: load_omniglot(tmp_path / "nowhere")):
        with pytest.raises(FileNotFoundError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message and "nothing is downloaded" in message
        assert "images_background.npz" in message and "<alphabet>/<character>" in message
    half = tmp_path / "omniglot"
    half.mkdir()
    np.savez(half / "images_background.npz", images=np.ones((1, 20, 105, 105), bool),
             labels=np.zeros((1, 20), np.int64))
    with pytest.raises(FileNotFoundError, match=str(half)):
        load_omniglot()


# Split -----------------------------------------------------------------------------------------


def test_standard_split_is_a_fixed_partition() -> None:
    split = split_characters()
    sizes = {name: len(part) for name, part in split.items()}
    assert sizes == {"train": 1100, "val": 100, "test": 423, "train+val": 1200}
    together = torch.cat([split["train"], split["val"], split["test"]])
    assert torch.equal(together.sort().values, torch.arange(1623))  # disjoint and complete
    assert torch.equal(torch.cat([split["train"], split["val"]]).sort().values,
                       split["train+val"])
    again = split_characters(1623, seed=0)
    assert all(torch.equal(split[name], again[name]) for name in split)
    assert not torch.equal(split_characters(seed=1)["test"], split["test"])
    with pytest.raises(ValueError, match="n_train"):
        split_characters(10, n_train=8, n_val=3)


# Sampling --------------------------------------------------------------------------------------


def test_batch_shapes_labels_and_slicing(tiny) -> None:
    ways, shots, queries, n = 5, 2, 3, 6
    tasks = OmniglotTasks(load_omniglot(tiny[0]), "train", ways, shots, queries)
    batch = tasks.sample(n, torch.Generator().manual_seed(0))
    assert isinstance(batch, FewShotBatch)
    assert batch.support_x.shape == (n, ways * shots, 1, 28, 28)
    assert batch.query_x.shape == (n, ways * queries, 1, 28, 28)
    assert batch.support_y.shape == (n, ways * shots) and batch.support_y.dtype == torch.int64
    assert batch.query_y.shape == (n, ways * queries)
    for i in range(n):
        assert torch.equal(torch.bincount(batch.support_y[i], minlength=ways),
                           torch.full((ways,), shots))
        assert torch.equal(torch.bincount(batch.query_y[i], minlength=ways),
                           torch.full((ways,), queries))
    head = tree_map(lambda t: t[:2], batch)
    assert isinstance(head, FewShotBatch) and head.query_x.shape[0] == 2


def test_label_order_and_assignment_vary_per_task(tiny, lookup) -> None:
    tasks = OmniglotTasks(load_omniglot(tiny[0]), "train", 5, 1, 2)
    batch = tasks.sample(8, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in batch.support_y}) > 1
    # Class (character, rotation) -> label differs between tasks sharing a class.
    labels: dict[tuple[int, int], set[int]] = {}
    for i, traced in enumerate(_trace(batch.support_x, lookup)):
        for (c, _, k), y in zip(traced, batch.support_y[i].tolist()):
            labels.setdefault((c, k), set()).add(y)
    assert max(len(seen) for seen in labels.values()) > 1


def test_same_generator_state_gives_the_same_batch(tiny) -> None:
    tasks = OmniglotTasks(load_omniglot(tiny[0]), "train", 3, 1, 1)
    a = tasks.sample(4, torch.Generator().manual_seed(3))
    b = tasks.sample(4, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("split", ["train", "val", "test", "train+val"])
def test_tasks_use_their_split_with_disjoint_support_and_query_drawers(tiny, lookup,
                                                                       split) -> None:
    data = load_omniglot(tiny[0])
    allowed = set(split_characters(10)[split].tolist())
    ways = min(4, 4 * len(allowed))
    shots, queries = 3, 4
    tasks = OmniglotTasks(data, split, ways, shots, queries)
    batch = tasks.sample(16, torch.Generator().manual_seed(1))
    support, query = _trace(batch.support_x, lookup), _trace(batch.query_x, lookup)
    rotations = set()
    for i in range(16):
        classes: dict[int, tuple[int, int]] = {}
        for part, y in ((support[i], batch.support_y[i]), (query[i], batch.query_y[i])):
            for (c, _, k), label in zip(part, y.tolist()):
                assert c in allowed  # no character from another split
                assert classes.setdefault(label, (c, k)) == (c, k)  # one class per label
                rotations.add(int(k))
        assert len(set(classes.values())) == ways  # distinct (character, rotation) classes
        for label in range(ways):
            s = [tuple(e[:2]) for e, y in zip(support[i], batch.support_y[i]) if y == label]
            q = [tuple(e[:2]) for e, y in zip(query[i], batch.query_y[i]) if y == label]
            assert len(set(s) | set(q)) == shots + queries  # distinct drawers, none shared
    assert rotations == {0, 1, 2, 3}


def test_without_rotation_images_are_unrotated(tiny, lookup) -> None:
    tasks = OmniglotTasks(load_omniglot(tiny[0]), torch.tensor([0, 4, 7]), 3, 2, 2,
                          rotate=False)
    batch = tasks.sample(8, torch.Generator().manual_seed(0))
    traced = np.concatenate([_trace(batch.support_x, lookup), _trace(batch.query_x, lookup)], 1)
    assert set(traced[..., 2].ravel()) == {0}
    assert set(traced[..., 0].ravel()) == {0, 4, 7}


def test_bad_task_shapes_are_refused(tiny) -> None:
    data = load_omniglot(tiny[0])
    with pytest.raises(ValueError, match="ways=9"):
        OmniglotTasks(data, "test", 9, 1, 1)  # 2 test characters x 4 rotations = 8 classes
    with pytest.raises(ValueError, match="21"):
        OmniglotTasks(data, "train", 2, 1, 20)
    with pytest.raises(ValueError, match="split"):
        OmniglotTasks(data, "validation", 2, 1, 1)  # type: ignore[arg-type]


# The real archives -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_full_archives_load() -> None:
    root = default_root()
    if root is None or not root.is_dir():
        pytest.skip("Omniglot not present (set METARL_DATA)")
    data = load_omniglot(root)
    assert data.images.shape == (1623, 20, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.images.min() == 0 and data.images.max() > 0.999 and data.n_background == 964
    assert 0.02 < data.images.mean() < 0.3  # mostly background (0), strokes 1
