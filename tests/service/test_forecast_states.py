"""A user's forecaster keeps its graph's own state tensors: what a shared store writes and reads
back must be the same state (stores hold the bytes the task encodes and decodes)."""

import numpy as np
import pytest

from service.tasks.forecast_states import StateTensors


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
