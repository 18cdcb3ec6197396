"""The cell search space of progressive neural architecture search (PNAS, Liu et al. 2018,
arXiv:1712.00559, Sec. 3.1), as Auto-Meta uses it (Kim et al. 2018, arXiv:1806.06927).

A cell is a sequence of B blocks. Block b takes two inputs, applies one operator to each and adds
the results. An input is one of the cell's two inputs (index 0: the output of the cell before the
previous one, 1: the previous cell's output) or the output of an earlier block of the same cell
(index 2 + j for block j). The cell's output is the sum of the outputs of the blocks that no later
block consumes (PNAS concatenates them and projects with a 1x1 convolution; a sum keeps the width
fixed without a projection, which suits a CPU-sized search).

Addition is commutative, so a block's two branches are stored in a canonical order (the smaller
``(input, operator index)`` pair first): a block and its mirror image are one candidate. PNAS
counts both orders; removing the duplicates shrinks B = 1 from ``n^2`` to ``n(n+1)/2`` blocks for
``n = inputs x operators`` choices per branch.

Every cell serialises to a short string, one block per ``|``-separated group, e.g.
``"0:sep3+1:max3|2:id+1:sep5"``, and ``parse_cell`` rebuilds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

# The operator set: a CPU-sized subset of the eight of PNAS (Liu et al. 2018, arXiv:1712.00559).
# sepK: depthwise-separable KxK convolution; max3/avg3: 3x3 pooling, stride 1; id: identity.
OPERATORS: tuple[str, ...] = ("sep3", "sep5", "max3", "avg3", "id")
CELL_INPUTS = 2  # the outputs of the two previous cells


class Block(NamedTuple):
    """``op1(input1) + op2(input2)``, branches in canonical order (see ``make_block``)."""

    input1: int
    op1: str
    input2: int
    op2: str


Cell = tuple[Block, ...]


def _branch_key(branch: tuple[int, str], operators: Sequence[str]) -> tuple[int, int]:
    return branch[0], operators.index(branch[1])


def make_block(input1: int, op1: str, input2: int, op2: str,
               operators: Sequence[str] = OPERATORS) -> Block:
    """The block with its two branches in canonical order; raises on an unknown operator."""
    for op in (op1, op2):
        if op not in operators:
            raise ValueError(f"unknown operator {op!r} (known: {', '.join(operators)})")
    first, second = sorted([(input1, op1), (input2, op2)],
                           key=lambda branch: _branch_key(branch, operators))
    return Block(first[0], first[1], second[0], second[1])


def check_cell(cell: Cell, operators: Sequence[str] = OPERATORS) -> None:
    """Raise ``ValueError`` unless every block reads only the cell inputs or earlier blocks, uses
    known operators and is in canonical order."""
    if not cell:
        raise ValueError("a cell needs at least one block")
    for b, block in enumerate(cell):
        for index in (block.input1, block.input2):
            if not 0 <= index < CELL_INPUTS + b:
                raise ValueError(f"block {b} reads input {index}; it may read "
                                 f"0..{CELL_INPUTS + b - 1} (the cell inputs, earlier blocks)")
        if make_block(*block, operators=operators) != block:
            raise ValueError(f"block {b} is not in canonical order: {format_block(block)}")


def format_block(block: Block) -> str:
    return f"{block.input1}:{block.op1}+{block.input2}:{block.op2}"


def format_cell(cell: Cell) -> str:
    """The cell's short string: blocks joined by ``|``, each ``in1:op1+in2:op2``."""
    return "|".join(format_block(block) for block in cell)


def parse_cell(text: str, operators: Sequence[str] = OPERATORS) -> Cell:
    """The cell a ``format_cell`` string describes (branches may come in either order; the
    result is canonical). Raises ``ValueError`` with the offending part on malformed text."""
    blocks = []
    for part in text.strip().split("|"):
        branches = part.split("+")
        if len(branches) != 2:
            raise ValueError(f"cell {text!r}: block {part!r} must be 'in1:op1+in2:op2'")
        parsed: list[tuple[int, str]] = []
        for branch in branches:
            index, _, op = branch.strip().partition(":")
            if not index.strip().isdigit() or not op:
                raise ValueError(f"cell {text!r}: branch {branch!r} must be 'input:operator'")
            parsed.append((int(index), op.strip()))
        blocks.append(make_block(parsed[0][0], parsed[0][1], parsed[1][0], parsed[1][1],
                                 operators))
    cell = tuple(blocks)
    check_cell(cell, operators)
    return cell


def block_choices(block_index: int, operators: Sequence[str] = OPERATORS) -> list[Block]:
    """Every canonical block that block ``block_index`` (0-based) of a cell can be: unordered
    pairs (with repetition) of ``(input, operator)`` branches, ``n(n+1)/2`` of them for
    ``n = (2 + block_index) * len(operators)``."""
    branches = [(i, op) for i in range(CELL_INPUTS + block_index) for op in operators]
    return [make_block(a[0], a[1], b[0], b[1], operators)
            for a, b in itertools.combinations_with_replacement(branches, 2)]


def enumerate_cells(operators: Sequence[str] = OPERATORS) -> list[Cell]:
    """All one-block cells (PNAS's B = 1 round)."""
    return [(block,) for block in block_choices(0, operators)]


def expand_cell(cell: Cell, operators: Sequence[str] = OPERATORS) -> list[Cell]:
    """All cells that append one block to ``cell`` (PNAS's expansion B -> B + 1)."""
    return [(*cell, block) for block in block_choices(len(cell), operators)]


def unused_blocks(cell: Cell) -> list[int]:
    """Indices of the blocks no later block reads: their sum is the cell's output."""
    read = {index - CELL_INPUTS for block in cell for index in (block.input1, block.input2)}
    return [b for b in range(len(cell)) if b not in read]
