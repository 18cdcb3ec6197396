import pytest

from metarl.fewshot.cell_space import (
    OPERATORS,
    Block,
    block_choices,
    enumerate_cells,
    expand_cell,
    format_cell,
    make_block,
    parse_cell,
    unused_blocks,
)


def test_one_block_cells_are_unordered_pairs_of_branches():
    # 2 inputs x 5 operators = 10 branch choices; unordered pairs with repetition: 10*11/2.
    cells = enumerate_cells()
    assert len(cells) == 55
    assert len(set(cells)) == 55
    # With two operators only: 4 branches -> 4*5/2 = 10 cells.
    assert len(enumerate_cells(("sep3", "id"))) == 10


def test_expansions_count_inputs_from_earlier_blocks():
    cell = enumerate_cells()[7]
    # block 1 may read 3 inputs: 15 branches -> 15*16/2 = 120 children
    children = expand_cell(cell)
    assert len(children) == 120 and len(set(children)) == 120
    assert all(child[:1] == cell for child in children)
    # block 2 may read 4 inputs: 20 branches -> 210 children
    assert len(expand_cell(children[0])) == 210
    assert len(block_choices(3)) == 25 * 26 // 2


def test_every_candidate_round_trips_through_its_string():
    cells = enumerate_cells()
    two = [child for cell in cells[:6] for child in expand_cell(cell)]
    three = [child for cell in two[:5] for child in expand_cell(cell)]
    for cell in cells + two + three:
        text = format_cell(cell)
        assert parse_cell(text) == cell
        assert format_cell(parse_cell(text)) == text


def test_mirror_blocks_are_one_candidate():
    assert make_block(1, "max3", 0, "sep3") == make_block(0, "sep3", 1, "max3")
    assert parse_cell("1:max3+0:sep3") == parse_cell("0:sep3+1:max3")
    assert format_cell(parse_cell("1:max3+0:sep3")) == "0:sep3+1:max3"
    # same input: operators ordered as in OPERATORS
    assert make_block(0, "id", 0, "sep3") == Block(0, "sep3", 0, "id")
    assert OPERATORS.index("sep3") < OPERATORS.index("id")


@pytest.mark.parametrize("text", ["", "0:sep3", "0:sep3+1:conv7", "2:sep3+1:id",
                                  "0:sep3+1:id|3:id+0:id", "a:sep3+1:id", "0:sep3+1:id+0:id"])
def test_malformed_strings_are_rejected(text):
    with pytest.raises(ValueError):
        parse_cell(text)


def test_unused_blocks_form_the_output():
    cell = parse_cell("0:sep3+1:id|2:max3+1:sep5|0:avg3+1:id")
    assert unused_blocks(cell) == [1, 2]
