"""A streaming forecaster's session state: its step graph's state tensors (one row each, the
batch axis taken out) and how many values the session has seen, kept as bytes by a shared store.

The bytes are `RST2`. Sessions stored by earlier releases still decode: `RST1` (a user's step
graph, no count of values: it had no attention to place) and `RSS1` (our forecaster's fixed
state `state, memory, last, filled`, the order of its step graph's state inputs).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAGIC, TENSORS_V1, STREAM_V1 = b"RST2", b"RST1", b"RSS1"
STREAM_HEADER = struct.Struct("<4sIIIIf")  # RSS1: magic, layers, hidden, window, filled, last


@dataclass(frozen=True, slots=True)
class StateTensors:
    """One session's state: each state tensor's row, in the graph's order; values seen."""

    arrays: tuple[np.ndarray, ...]
    seen: int = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    # Magic, count, values seen, then per tensor its dtype and shape, then the data.
    def to_bytes(self) -> bytes:
        head = [MAGIC, struct.pack("<IQ", len(self.arrays), self.seen)]
        head += [_describe(a.shape, a.dtype) for a in self.arrays]
        return b"".join(head) + b"".join(np.ascontiguousarray(a).tobytes() for a in self.arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> StateTensors:
        """`to_bytes`'s bytes, or an earlier release's (ValueError if neither)."""
        magic = data[:4]
        if magic == STREAM_V1:
            return _from_stream_state(data)
        if magic not in (MAGIC, TENSORS_V1):
            raise ValueError(f"not a state of tensors (magic {magic!r})")
        try:
            if magic == MAGIC:
                count, seen = struct.unpack_from("<IQ", data, 4)
                offset = 16
            else:
                (count,), seen, offset = struct.unpack_from("<I", data, 4), 0, 8
            specs = []
            for _ in range(count):
                (n,) = struct.unpack_from("<B", data, offset)
                kind = data[offset + 1 : offset + 1 + n].decode()
                offset += 1 + n
                (ndim,) = struct.unpack_from("<B", data, offset)
                shape = struct.unpack_from(f"<{ndim}I", data, offset + 1)
                offset += 1 + 4 * ndim
                specs.append((np.dtype(kind), shape))
            arrays = []
            for kind, shape in specs:
                size = int(np.prod(shape))
                arrays.append(np.frombuffer(data, kind, size, offset).reshape(shape).copy())
                offset += kind.itemsize * size
        except (struct.error, TypeError, UnicodeError, ValueError) as error:
            raise ValueError(f"a truncated state of tensors ({error})") from None
        if offset != len(data):
            raise ValueError(f"a state of tensors with {len(data) - offset} bytes left over")
        return cls(tuple(arrays), seen)


class StateLayout:
    """The rows of the state tensors one step graph takes: a session's fresh state, and its
    stored bytes read back (those of its own layout at a glance, a step on every session)."""

    def __init__(self, rows: Sequence[tuple[Sequence[int], str]]) -> None:
        self.rows = [(tuple(shape), np.dtype(dtype)) for shape, dtype in rows]
        self.count = struct.pack("<I", len(self.rows))
        self.described = b"".join(_describe(shape, dtype) for shape, dtype in self.rows)
        self.data_offset = 16 + len(self.described)
        sizes = [math.prod(shape) * dtype.itemsize for shape, dtype in self.rows]
        self.size = self.data_offset + sum(sizes)

    def zeros(self) -> StateTensors:
        return StateTensors(tuple(np.zeros(shape, dtype) for shape, dtype in self.rows))

    def decode(self, data: bytes) -> StateTensors:
        """The state in `data` (ValueError if it is not one of this layout)."""
        if (
            len(data) == self.size
            and data[:4] == MAGIC
            and data[4:8] == self.count
            and data[16 : self.data_offset] == self.described
        ):
            (seen,), offset, arrays = struct.unpack_from("<Q", data, 8), self.data_offset, []
            for shape, dtype in self.rows:
                count = math.prod(shape)
                arrays.append(np.frombuffer(data, dtype, count, offset).reshape(shape))
                offset += count * dtype.itemsize
            return StateTensors(tuple(arrays), seen)
        state = StateTensors.from_bytes(data)  # an earlier release's bytes, or not a state
        if [(a.shape, a.dtype) for a in state.arrays] != self.rows:
            raise ValueError("a state of other tensors than this version's step graph takes")
        return state


def _describe(shape: Sequence[int], dtype: np.dtype) -> bytes:
    """One tensor's dtype and shape, as the bytes of a state give them."""
    kind = dtype.str.encode()
    return struct.pack(f"<B{len(kind)}sB{len(shape)}I", len(kind), kind, len(shape), *shape)


def _from_stream_state(data: bytes) -> StateTensors:
    """An `RSS1` state: header, then the float32 `state` (layers, hidden) and `memory`
    (window, hidden). Its `filled` slots are the values seen, as far as attention needs."""
    if len(data) < STREAM_HEADER.size:
        raise ValueError(f"not a stream state ({len(data)} bytes)")
    _, layers, hidden, window, filled, last = STREAM_HEADER.unpack_from(data)
    if len(data) != STREAM_HEADER.size + 4 * hidden * (layers + window):
        raise ValueError(f"not a stream state ({len(data)} bytes)")
    arrays = np.frombuffer(data, "<f4", offset=STREAM_HEADER.size).astype(np.float32)
    state, memory = arrays[: layers * hidden], arrays[layers * hidden :]
    return StateTensors(
        (
            state.reshape(layers, hidden),
            memory.reshape(window, hidden),
            np.array(last, np.float32),
            np.array(filled, np.int64),
        ),
        filled,
    )
