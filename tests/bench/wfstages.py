"""The workflow workload's task, as a plain function (Dask) and as a dagrun stage.

A workflow task burns the CPU for its share of the instance's work and
returns a fresh uint8 array of its share of the output bytes; its inputs
(its parents' arrays) are only looked at (one byte per page), as a task
reading its input files would.

dagrun binds inputs by parameter name and takes no ``*args``, so the stage
has 128 optional input parameters ``i0`` … ``i127``; ``tests.bench.workflow``
binds a task's parents to the first ones and refuses an instance with a
wider fan-in (none of the chosen recipes and sizes has one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dagrun import stage

from .tasks import burn

MAX_INPUTS = 128
INPUTS = tuple(f"i{k}" for k in range(MAX_INPUTS))


def work(*inputs: Any, iterations: int = 0, nbytes: int = 0) -> np.ndarray:
    """Read one byte per page of each input, burn ``iterations``, return ``nbytes`` of output."""
    seen = 0
    for x in inputs:
        if isinstance(x, np.ndarray) and x.size:
            seen += int(x[::4096].sum())
    burn(iterations)
    return np.full(nbytes, seen % 251, dtype=np.uint8)


@stage(cache=False)
def wf_task(
    iterations: int = 0, nbytes: int = 0,
    i0: Any = None, i1: Any = None, i2: Any = None, i3: Any = None, i4: Any = None,
    i5: Any = None, i6: Any = None, i7: Any = None, i8: Any = None, i9: Any = None,
    i10: Any = None, i11: Any = None, i12: Any = None, i13: Any = None, i14: Any = None,
    i15: Any = None, i16: Any = None, i17: Any = None, i18: Any = None, i19: Any = None,
    i20: Any = None, i21: Any = None, i22: Any = None, i23: Any = None, i24: Any = None,
    i25: Any = None, i26: Any = None, i27: Any = None, i28: Any = None, i29: Any = None,
    i30: Any = None, i31: Any = None, i32: Any = None, i33: Any = None, i34: Any = None,
    i35: Any = None, i36: Any = None, i37: Any = None, i38: Any = None, i39: Any = None,
    i40: Any = None, i41: Any = None, i42: Any = None, i43: Any = None, i44: Any = None,
    i45: Any = None, i46: Any = None, i47: Any = None, i48: Any = None, i49: Any = None,
    i50: Any = None, i51: Any = None, i52: Any = None, i53: Any = None, i54: Any = None,
    i55: Any = None, i56: Any = None, i57: Any = None, i58: Any = None, i59: Any = None,
    i60: Any = None, i61: Any = None, i62: Any = None, i63: Any = None, i64: Any = None,
    i65: Any = None, i66: Any = None, i67: Any = None, i68: Any = None, i69: Any = None,
    i70: Any = None, i71: Any = None, i72: Any = None, i73: Any = None, i74: Any = None,
    i75: Any = None, i76: Any = None, i77: Any = None, i78: Any = None, i79: Any = None,
    i80: Any = None, i81: Any = None, i82: Any = None, i83: Any = None, i84: Any = None,
    i85: Any = None, i86: Any = None, i87: Any = None, i88: Any = None, i89: Any = None,
    i90: Any = None, i91: Any = None, i92: Any = None, i93: Any = None, i94: Any = None,
    i95: Any = None, i96: Any = None, i97: Any = None, i98: Any = None, i99: Any = None,
    i100: Any = None, i101: Any = None, i102: Any = None, i103: Any = None, i104: Any = None,
    i105: Any = None, i106: Any = None, i107: Any = None, i108: Any = None, i109: Any = None,
    i110: Any = None, i111: Any = None, i112: Any = None, i113: Any = None, i114: Any = None,
    i115: Any = None, i116: Any = None, i117: Any = None, i118: Any = None, i119: Any = None,
    i120: Any = None, i121: Any = None, i122: Any = None, i123: Any = None, i124: Any = None,
    i125: Any = None, i126: Any = None, i127: Any = None,
) -> np.ndarray:
    """``work`` over the inputs that are bound (the rest stay None)."""
    bound = locals()
    inputs = [bound[k] for k in INPUTS if bound[k] is not None]
    return work(*inputs, iterations=iterations, nbytes=nbytes)
