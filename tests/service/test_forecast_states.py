"""A forecaster keeps its graph's own state tensors: what a shared store writes and reads
back must be the same state (stores hold the bytes the task encodes and decodes)."""

import struct

import numpy as np
import pytest

from service.tasks.forecast_states import StateLayout, StateTensors


def test_state_tensors_survive_the_shared_stores_bytes():
    state = StateTensors(
        (np.arange(12, dtype=np.float32).reshape(3, 4), np.array(7, np.int64), np.ones(2, bool))
    )
    back = StateTensors.from_bytes(state.to_bytes())
    assert isinstance(back, StateTensors)
    assert [a.dtype for a in back.arrays] == [np.float32, np.int64, np.bool_]
    for a, b in zip(state.arrays, back.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.nbytes == state.nbytes == 48 + 8 + 2


def test_truncated_state_bytes_are_refused():
    data = StateTensors((np.zeros(4, np.float32),)).to_bytes()
    with pytest.raises(ValueError):
        StateTensors.from_bytes(data[:-1])
    with pytest.raises(ValueError, match="magic"):
        StateTensors.from_bytes(b"XXXX" + data[4:])


def test_states_kept_by_earlier_releases_still_decode():
    """A rolling upgrade meets sessions an earlier release stored in Redis: a user's graph's
    `RST1` (no count of values) and our forecaster's fixed `RSS1` state."""
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array(4, np.int64))
    head = b"RST1" + struct.pack("<I", 2)
    head += struct.pack("<B3sB2I", 3, b"<f4", 2, 2, 3) + struct.pack("<B3sB", 3, b"<i8", 0)
    back = StateTensors.from_bytes(head + b"".join(a.tobytes() for a in arrays))
    assert back.seen == 0 and [a.shape for a in back.arrays] == [(2, 3), ()]
    np.testing.assert_array_equal(back.arrays[0], arrays[0])

    layers, hidden, window, filled = 2, 3, 4, 3
    state = np.full((layers, hidden), 0.5, np.float32)
    memory = np.arange(window * hidden, dtype=np.float32).reshape(window, hidden)
    data = struct.pack("<4sIIIIf", b"RSS1", layers, hidden, window, filled, 1.25)
    back = StateTensors.from_bytes(data + state.tobytes() + memory.tobytes())
    assert back.seen == filled
    np.testing.assert_array_equal(back.arrays[0], state)
    np.testing.assert_array_equal(back.arrays[1], memory)
    assert (back.arrays[2].dtype, float(back.arrays[2])) == (np.float32, 1.25)
    assert (back.arrays[3].dtype, int(back.arrays[3])) == (np.int64, filled)
    with pytest.raises(ValueError, match="not a stream state"):
        StateTensors.from_bytes(data + state.tobytes())


def test_a_step_graphs_layout_reads_its_own_states_and_refuses_others():
    layout = StateLayout([((3, 4), "float32"), ((), "int64")])
    state = StateTensors((np.arange(12, dtype=np.float32).reshape(3, 4), np.array(7, np.int64)), 9)
    back = layout.decode(state.to_bytes())
    assert back.seen == 9 and int(back.arrays[1]) == 7
    np.testing.assert_array_equal(back.arrays[0], state.arrays[0])
    fresh = layout.zeros()
    assert fresh.seen == 0 and fresh.nbytes == 48 + 8 and not fresh.arrays[0].any()
    other = StateTensors((np.zeros((3, 5), np.float32), np.array(0, np.int64))).to_bytes()
    with pytest.raises(ValueError, match="other tensors"):
        layout.decode(other)
    with pytest.raises(ValueError, match="magic"):
        layout.decode(b"XXXX" + state.to_bytes()[4:])
