"""Latency sketches: DDSketch (relative-error quantiles that merge exactly) and its compact storage format.

Every sketch here uses ``RELATIVE_ACCURACY`` (1 %): a quantile it returns is within 1 % of a value whose rank is
the requested one, and merging two sketches gives the same bins as sketching the union, so per-instance minute
rows merge into the fleet, the hour and the day without the raw values. Latencies are non-negative; a negative
one (a clock step) is counted as 0.

Storage (``dumps``/``loads``, little-endian): version byte, relative accuracy, zero count, min, max, sum
(doubles), first key (int64), number of bins (uint32), then the bins as doubles — one row of ~50 bins for a
typical route-minute.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Iterable, Sequence

import numpy as np
from ddsketch import DDSketch

RELATIVE_ACCURACY = 0.01
QUANTILES = (0.5, 0.9, 0.99)
_VERSION = 1
_HEADER = struct.Struct("<Bdddddqi")


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def sketch_from_values(values: Sequence[float] | np.ndarray) -> DDSketch:
    """A sketch of ``values`` built with numpy: the same keys ``DDSketch.add`` computes, one pass, no Python loop."""
    sketch = new_sketch()
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return sketch
    data = np.maximum(data, 0.0)
    mapping = sketch._mapping
    positive = data[data > mapping.min_possible]
    zeros = data.size - positive.size
    if positive.size:
        # LogarithmicMapping.key: ceil(log2(v) * multiplier) + offset
        keys = np.ceil(np.log2(positive) * mapping._multiplier).astype(np.int64) + int(mapping._offset)
        min_key, max_key = int(keys.min()), int(keys.max())
        bins = np.bincount(keys - min_key, minlength=max_key - min_key + 1).astype(np.float64)
        _set_bins(sketch, min_key, bins.tolist())
    sketch._zero_count = float(zeros)
    sketch._count = float(data.size)
    sketch._sum = float(data.sum())
    sketch._min = float(data.min())
    sketch._max = float(data.max())
    return sketch


def _set_bins(sketch: DDSketch, min_key: int, bins: list[float]) -> None:
    store = sketch._store
    store.bins = bins
    store.offset = min_key
    store.min_key = min_key
    store.max_key = min_key + len(bins) - 1
    store.count = float(sum(bins))


def merge_all(sketches: Iterable[DDSketch]) -> DDSketch:
    merged = new_sketch()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def quantiles(sketch: DDSketch) -> tuple[float | None, ...]:
    """p50, p90, p99 (``QUANTILES``), None for an empty sketch."""
    if sketch.count == 0:
        return tuple(None for _ in QUANTILES)
    return tuple(_value(sketch.get_quantile_value(q)) for q in QUANTILES)


def _value(v: float | None) -> float | None:
    return None if v is None else float(v)


def dumps(sketch: DDSketch) -> bytes:
    store = sketch._store
    if sketch._negative_store.count:
        raise ValueError("latency sketches hold no negative values")
    if store.count:
        first = store.min_key
        bins = array("d", store.bins[first - store.offset:store.max_key - store.offset + 1])
    else:
        first, bins = 0, array("d")
    empty = sketch.count == 0
    header = _HEADER.pack(_VERSION, RELATIVE_ACCURACY, float(sketch._zero_count),
                          0.0 if empty else float(sketch._min), 0.0 if empty else float(sketch._max),
                          float(sketch._sum), first, len(bins))
    if bins.itemsize != 8:  # pragma: no cover - every platform Python runs on has 8-byte doubles
        raise RuntimeError("array('d') is not 8 bytes wide")
    if struct.pack("=H", 1) != struct.pack("<H", 1):  # pragma: no cover - big-endian hosts
        bins.byteswap()
    return header + bins.tobytes()


def loads(data: bytes | memoryview | None) -> DDSketch:
    sketch = new_sketch()
    if not data:
        return sketch
    raw = bytes(data)
    version, accuracy, zero_count, low, high, total, first, n = _HEADER.unpack_from(raw)
    if version != _VERSION or not math.isclose(accuracy, RELATIVE_ACCURACY):
        raise ValueError(f"sketch format {version} at accuracy {accuracy} cannot merge with this build's")
    bins = array("d")
    bins.frombytes(raw[_HEADER.size:_HEADER.size + 8 * n])
    if struct.pack("=H", 1) != struct.pack("<H", 1):  # pragma: no cover
        bins.byteswap()
    if n:
        _set_bins(sketch, first, bins.tolist())
    sketch._zero_count = zero_count
    sketch._count = sketch._store.count + zero_count
    sketch._sum = total
    if sketch._count:
        sketch._min, sketch._max = low, high
    return sketch
