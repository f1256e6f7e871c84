"""A small reusable module: load numbers, scale them, sum them."""

from dagrun import stage


@stage
def loaded(count: int = 4) -> list[int]:
    return list(range(count))


@stage
def scaled(loaded: list[int], factor: int = 1) -> list[int]:
    return [x * factor for x in loaded]


@stage
def summed(scaled: list[int]) -> int:
    return sum(scaled)
