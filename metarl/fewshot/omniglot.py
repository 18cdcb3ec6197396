"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015): loading, the standard split, task sampling.

Protocol (MAML, Finn et al. 2017, arXiv:1703.03400 Sec. 5.2; Prototypical Networks, Snell et
al. 2017, arXiv:1703.05175 Sec. 3.1): the 1623 characters x 20 drawers are resized from 105x105
to 28x28; 1200 characters are used for meta-training (MAML: 1100 train + 100 validation) and the
other 423 for meta-test; every character rotated by 0, 90, 180 and 270 degrees is its own class.

``load_omniglot`` reads either the two NumPy archives (``images_background.npz`` and
``images_evaluation.npz``) or the original release's PNG folders, resizes every image by exact
area averaging and keeps the result in memory (nothing is written next to the data; nothing is
downloaded). ``split_characters`` is the fixed-seed character split and ``OmniglotTasks`` draws
whole batches of N-way K-shot tasks as tensors, with no per-image Python work.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

N_CHARACTERS = 1623  # 964 background + 659 evaluation characters
N_DRAWERS = 20
N_TRAIN, N_VAL = 1100, 100  # the 1200 meta-training characters; the other 423 are the test split
DEFAULT_SPLIT_SEED = 0
SPLITS = ("train", "val", "test", "train+val")
_PARTS = ("images_background", "images_evaluation")
_RESIZE_CHUNK = 256  # images resized per batched matmul: a float copy of ~11 MB

Split = Literal["train", "val", "test", "train+val"]


class OmniglotData(NamedTuple):
    """The resized image set, characters in release order (background first, then evaluation).

    ``images`` is ``[characters, drawers, 1, size, size]`` float32 in [0, 1] with strokes 1 and
    background 0. It is shared by every caller of ``load_omniglot`` (an in-memory cache): treat it
    as read-only.
    """

    images: Tensor
    root: Path
    layout: Literal["npz", "png"]
    n_background: int  # the first n_background characters come from images_background


class FewShotBatch(NamedTuple):
    """A batch of N classification tasks; every field has the task dimension N first.

    ``support_x`` ``[N, ways * shots, ...]``, ``support_y`` ``[N, ways * shots]`` (int64 labels in
    0..ways-1), ``query_x`` ``[N, ways * queries, ...]``, ``query_y`` ``[N, ways * queries]``.
    Slice tasks with ``torch.utils._pytree.tree_map(lambda t: t[i:j], batch)``.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor


def _missing(where: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Omniglot not found {where}: put images_background.npz and images_evaluation.npz "
        "(keys images [chars, 20, 105, 105] bool, labels) or the original release's folders "
        "images_background/<alphabet>/<character>/*.png and images_evaluation/... in a folder "
        "and pass it as root, or set METARL_DATA so that $METARL_DATA/omniglot is that folder; "
        "nothing is downloaded"
    )


def default_root() -> Path | None:
    """``$METARL_DATA/omniglot`` when METARL_DATA is set; ``None`` otherwise (then a config's
    ``data_path`` must say where the data is)."""
    env = os.environ.get("METARL_DATA")
    return Path(env) / "omniglot" if env else None


def _layout(root: Path) -> Literal["npz", "png"]:
    if all((root / f"{part}.npz").is_file() for part in _PARTS):
        return "npz"
    if all((root / part).is_dir() for part in _PARTS):
        return "png"
    raise _missing(f"under {root}")


def load_omniglot(root: str | Path | None = None, image_size: int = 28) -> OmniglotData:
    """All 1623 x 20 Omniglot images, resized to ``image_size`` x ``image_size``.

    ``root`` defaults to ``default_root()``. The NumPy archives are read when both are present,
    else the original PNG folders (characters ordered by alphabet folder name, then character
    folder name; drawers by file name). Resizing averages each output pixel over the exact area
    it covers (fractional edge pixels weighted by their overlap), done as two batched matmuls.
    The result is cached in memory per (folder, size): a second call returns the same tensor.
    Raises ``FileNotFoundError`` when the data is missing.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    path = Path(root) if root is not None else default_root()
    if path is None:
        raise _missing("(no root given and METARL_DATA unset)")
    return _load_cached(path.resolve(), image_size)


@functools.lru_cache(maxsize=4)
def _load_cached(root: Path, image_size: int) -> OmniglotData:
    layout = _layout(root)
    read = _read_npz if layout == "npz" else _read_png
    parts = [read(root / part) for part in _PARTS]
    if parts[0].shape[1:] != parts[1].shape[1:]:
        raise ValueError(f"{root}: drawers or image sizes differ between {_PARTS[0]} and "
                         f"{_PARTS[1]}: {parts[0].shape[1:]} vs {parts[1].shape[1:]}")
    background = torch.from_numpy(np.concatenate(parts))
    images = area_resize_strokes(background, image_size).unsqueeze(2)
    return OmniglotData(images, root, layout, n_background=parts[0].shape[0])


def _read_npz(stem: Path) -> np.ndarray:
    path = stem.with_suffix(".npz")
    with np.load(path, allow_pickle=False) as archive:
        if "images" not in archive or "labels" not in archive:
            raise ValueError(f"{path} must hold arrays 'images' and 'labels', has {archive.files}")
        images: np.ndarray = archive["images"]
        labels: np.ndarray = archive["labels"]
    if images.dtype != np.bool_ or images.ndim != 4:
        raise ValueError(f"{path}: 'images' must be bool [chars, drawers, H, W], "
                         f"got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:2] or (labels != labels[:, :1]).any():
        raise ValueError(f"{path}: 'labels' must be [chars, drawers] with one label per row")
    return images


def _read_png(folder: Path) -> np.ndarray:
    """``[chars, drawers, H, W]`` bool, True = background, from ``<alphabet>/<character>/*.png``."""
    from PIL import Image  # only this layout needs Pillow

    characters = [c for a in _subfolders(folder) for c in _subfolders(a)]
    if not characters:
        raise _missing(f"under {folder} (no <alphabet>/<character> folders)")
    drawings: list[np.ndarray] = []
    for character in characters:
        files = sorted(character.glob("*.png"))
        if len(files) != len(sorted(characters[0].glob("*.png"))) or not files:
            raise ValueError(f"{character}: {len(files)} drawings, expected the same number as "
                             f"{characters[0]} (and at least one)")
        for file in files:
            with Image.open(file) as image:
                # Through 8-bit grey, not mode "1": converting to "1" would dither grey pixels.
                drawings.append(np.asarray(image.convert("L")) > 127)
    shapes = {d.shape for d in drawings}
    if len(shapes) != 1:
        raise ValueError(f"{folder}: images of different sizes {sorted(shapes)}")
    return np.stack(drawings).reshape(len(characters), -1, *drawings[0].shape)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def area_weights(n_in: int, n_out: int) -> Tensor:
    """``[n_out, n_in]`` exact area-averaging weights: row i is the overlap of input pixel j
    with output pixel i's footprint ``[i, i + 1) * n_in / n_out``, divided by the footprint."""
    scale = n_in / n_out
    edges = torch.arange(n_out + 1, dtype=torch.float64) * scale
    pixels = torch.arange(n_in + 1, dtype=torch.float64)
    low = torch.maximum(edges[:-1, None], pixels[None, :-1])
    high = torch.minimum(edges[1:, None], pixels[None, 1:])
    return ((high - low).clamp(min=0) / scale).float()


def area_resize_strokes(background: Tensor, size: int) -> Tensor:
    """Bool images ``[..., H, W]`` (True = background) -> float32 ``[..., size, size]``, strokes 1.

    Each output pixel is the mean over the exact area it covers: ``A_h @ x @ A_w^T`` with
    ``area_weights``, over chunks of images so that the float copy stays small. On the 1623 x 20
    images (one thread, ~0.9 s CPU) as fast as ``interpolate(mode="area")``, whose windows round
    to whole pixels, and as a gcd-blocked matmul; PIL's resize image by image is slower.
    """
    *lead, h, w = background.shape
    flat = background.reshape(-1, h, w)
    rows, cols = area_weights(h, size), area_weights(w, size).T.contiguous()
    out = torch.empty(flat.shape[0], size, size)
    for i in range(0, flat.shape[0], _RESIZE_CHUNK):
        out[i : i + _RESIZE_CHUNK] = rows @ (~flat[i : i + _RESIZE_CHUNK]).float() @ cols
    return out.clamp_(0.0, 1.0).reshape(*lead, size, size)


def split_characters(
    n_chars: int = N_CHARACTERS,
    seed: int = DEFAULT_SPLIT_SEED,
    n_train: int | None = None,
    n_val: int | None = None,
) -> dict[str, Tensor]:
    """The fixed-seed character split: sorted int64 index tensors ``train``, ``val``, ``test``
    and ``train+val``.

    A permutation of ``range(n_chars)`` from ``torch.randperm`` with a CPU generator seeded by
    ``seed`` (default 0): its first ``n_train`` characters are ``train``, the next ``n_val``
    ``val``, the rest ``test``. For the full set that is 1100 / 100 / 423, and ``train+val`` is
    the 1200 meta-training characters of MAML and ProtoNets. On other sizes (tests, subsets)
    ``n_train`` and ``n_val`` default to the same proportions, rounded.
    """
    if n_train is None:
        n_train = round(n_chars * N_TRAIN / N_CHARACTERS)
    if n_val is None:
        n_val = round(n_chars * N_VAL / N_CHARACTERS)
    if n_train < 0 or n_val < 0 or n_train + n_val > n_chars:
        raise ValueError(f"n_train={n_train} and n_val={n_val} do not fit {n_chars} characters")
    order = torch.randperm(n_chars, generator=torch.Generator().manual_seed(seed))
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
        "train+val": order[: n_train + n_val],
    }
    return {name: part.sort().values for name, part in parts.items()}


class OmniglotTasks:
    """N-way K-shot classification tasks over the characters of one split.

    Classes are the split's characters, and with ``rotate`` every (character, rotation by 0, 90,
    180 or 270 degrees) pair (ProtoNets' augmentation: 4x the classes). A task draws ``ways``
    distinct classes and, per class, ``shots + queries`` distinct drawers: the first ``shots``
    for the support set, the rest for the query set, so the two never share a drawing. Labels
    0..ways-1 are assigned to the classes at random, and support and query examples come in a
    random order (grouped views of a class need the labels, e.g. one-hot prototypes).

    ``split`` is a name of ``split_characters`` (with ``split_seed``) or a tensor of character
    indices. The split's images are copied to ``device`` once; ``sample`` draws its random numbers
    on the generator's device and gathers the batch on ``device``.
    """

    def __init__(
        self,
        data: OmniglotData,
        split: Split | Tensor,
        ways: int,
        shots: int,
        queries: int,
        rotate: bool = True,
        device: str | torch.device = "cpu",
        split_seed: int = DEFAULT_SPLIT_SEED,
    ) -> None:
        n_chars, n_drawers = data.images.shape[:2]
        if isinstance(split, Tensor):
            characters = split.long().cpu()
        elif split in SPLITS:
            characters = split_characters(n_chars, split_seed)[split]
        else:
            raise ValueError(f"split must be one of {SPLITS} or an index tensor, got {split!r}")
        self.characters = characters
        self.rotations = 4 if rotate else 1
        self.n_classes = len(characters) * self.rotations
        if ways < 1 or shots < 1 or queries < 0:
            raise ValueError(f"need ways >= 1, shots >= 1, queries >= 0; got ways={ways}, "
                             f"shots={shots}, queries={queries}")
        if ways > self.n_classes:
            raise ValueError(f"ways={ways} exceeds the split's {self.n_classes} classes")
        if shots + queries > n_drawers:
            raise ValueError(f"shots + queries = {shots + queries} exceeds the {n_drawers} "
                             "drawers per character")
        self.ways, self.shots, self.queries = ways, shots, queries
        self.device = torch.device(device)
        self.images = data.images[characters].to(self.device)  # [C, D, 1, S, S]

    def sample(self, n_tasks: int, generator: torch.Generator) -> FewShotBatch:
        """``n_tasks`` tasks as one ``FewShotBatch``; all randomness comes from ``generator``."""
        ways, shots, n_drawers = self.ways, self.shots, self.images.shape[1]
        on = generator.device

        def top(keys_shape: Sequence[int], k: int) -> Tensor:
            # The k largest of i.i.d. uniform keys, ordered by key: k distinct indices in a
            # uniformly random order (sampling without replacement, no loop over tasks). The
            # order matters (labels, support vs query), hence sorted=True.
            keys = torch.rand(*keys_shape, generator=generator, device=on)
            return keys.topk(k, dim=-1, sorted=True).indices

        classes = top((n_tasks, self.n_classes), ways)  # [N, ways]; slot j gets label j
        drawers = top((n_tasks, ways, n_drawers), shots + self.queries)  # [N, ways, K]
        character, rotation = classes // self.rotations, classes % self.rotations

        def examples(drawer: Tensor) -> tuple[Tensor, Tensor]:
            per_class = drawer.shape[2]
            count = ways * per_class
            order = torch.rand(n_tasks, count, generator=generator, device=on).argsort(dim=1)
            label = order // per_class  # the flat (label, example) index, shuffled
            pick = drawer.reshape(n_tasks, count).gather(1, order)
            char = character.gather(1, label).to(self.device)
            rot = rotation.gather(1, label).to(self.device)
            x = self.images[char, pick.to(self.device)]
            for k in range(1, self.rotations):
                hit = rot == k
                x[hit] = torch.rot90(x[hit], k, dims=(-2, -1))
            return x, label.to(self.device)

        support_x, support_y = examples(drawers[:, :, :shots])
        query_x, query_y = examples(drawers[:, :, shots:])
        return FewShotBatch(support_x, support_y, query_x, query_y)


def synthetic_omniglot(characters: int = 40, seed: int = 0) -> OmniglotData:
    """A small learnable stand-in for Omniglot, for tests and smoke runs: each character a random
    28x28 stroke template, each of its 20 drawers that template plus noise."""
    g = torch.Generator().manual_seed(seed)
    templates = (torch.rand(characters, 1, 1, 28, 28, generator=g) < 0.2).float()
    noise = 0.3 * torch.rand(characters, 20, 1, 28, 28, generator=g)
    images = (templates + noise).clamp(0, 1)
    return OmniglotData(images, Path("."), "npz", n_background=characters // 2)


def write_synthetic_omniglot(folder: str | Path, characters: int = 80, seed: int = 0,
                             side: int = 28) -> Path:
    """Write a small learnable stand-in for Omniglot as the two NumPy archives in ``folder``
    (created if needed) and return it: each character a random ``side`` x ``side`` stroke
    template, each of its 20 drawings that template with 5% of the pixels flipped. For smoke
    runs and tests of the whole pipeline (``data_path``); at ``side`` 28 no resizing happens."""
    if characters < 2:
        raise ValueError(f"characters must be >= 2, got {characters}")
    rng = np.random.default_rng(seed)
    templates = rng.random((characters, 1, side, side)) < 0.2
    strokes = templates ^ (rng.random((characters, N_DRAWERS, side, side)) < 0.05)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    half = characters // 2
    for part, images in zip(_PARTS, (~strokes[:half], ~strokes[half:])):  # True = background
        labels = np.repeat(np.arange(len(images))[:, None], N_DRAWERS, axis=1)
        np.savez(folder / f"{part}.npz", images=images, labels=labels)
    return folder
