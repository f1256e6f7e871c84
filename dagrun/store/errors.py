"""Errors of the intermediates store, placed under ``dagrun.errors``' tree.

StoreError (dagrun.errors)
├── StoreFull (dagrun.errors)        no room in shared memory nor on disk
├── SegmentExistsError               a segment name was already taken (never attached)
└── SegmentMissingError              a handle names a segment that is gone
"""

from __future__ import annotations

from ..errors import StoreError, StoreFull

__all__ = ["SegmentExistsError", "SegmentMissingError", "StoreError", "StoreFull"]


class SegmentExistsError(StoreError):
    """A new segment's name already existed: dagrun refuses to attach to it."""


class SegmentMissingError(StoreError):
    """A handle names a segment that was released or removed."""
