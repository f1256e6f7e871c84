"""Helpers of the cache test pipeline: ``scaled`` calls ``_inner``, which reads ``FACTOR``."""

FACTOR = 3


def _inner(x):
    return x * FACTOR


def scaled(x):
    return _inner(x) + 1
