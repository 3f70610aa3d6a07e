import pytest

from medboard.backends.packing import PACK_MULTIPLE, pack, plan_packed

torch = pytest.importorskip("torch")


def test_plan_packed_fills_batches_first_fit_from_the_longest() -> None:
    sizes = [300, 40, 1000, 700, 260, 5000, 30, 700, 10]
    plan = plan_packed(sizes, 1024)
    assert sorted(i for batch in plan for i in batch) == list(range(len(sizes)))
    # the one over budget alone; each into the first batch with room (10 into the first one)
    assert plan == [[5], [2, 8], [3, 0], [7, 4, 1], [6]]
    for batch in plan[1:]:
        assert sum(sizes[i] for i in batch) <= 1024
    assert plan == plan_packed(sizes, 1024)
    assert plan_packed([], 10) == []


def test_pack_lays_sequences_end_to_end_and_pads_the_row() -> None:
    ids, positions, starts = pack([[5, 6, 7], [8], [9, 10]])
    assert ids.shape == positions.shape == (1, PACK_MULTIPLE)
    assert ids[0, :6].tolist() == [5, 6, 7, 8, 9, 10] and not ids[0, 6:].any()
    assert positions[0, :8].tolist() == [0, 1, 2, 0, 0, 1, 0, 1]
    assert positions[0, -1] == PACK_MULTIPLE - 7  # the padding: one more sequence
    assert starts.tolist() == [0, 3, 4, 6, PACK_MULTIPLE]
    full = [[1] * (PACK_MULTIPLE - 1), [2]]  # exactly one multiple: no padding sequence
    ids, positions, starts = pack(full)
    assert starts.tolist() == [0, PACK_MULTIPLE - 1, PACK_MULTIPLE]
    assert pack([[1] * (PACK_MULTIPLE + 1)])[0].shape == (1, 2 * PACK_MULTIPLE)
