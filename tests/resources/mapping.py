"""Fan-out: square every element of a list, in batches, and sum the results."""

from dagrun import stage


@stage
def numbers(count: int = 10) -> list[int]:
    return list(range(count))


@stage(map="numbers", batch_size=3)
def squared(numbers: int) -> int:
    if numbers == 13:
        raise ValueError("thirteen is unlucky")
    return numbers * numbers


@stage
def total(squared: list[int]) -> int:
    return sum(squared)
