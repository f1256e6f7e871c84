"""A stage that reports the tuning in force where it runs."""

from dagrun import stage
from dagrun.settings import tuning


@stage
def numbers() -> tuple[int, int]:
    return tuning().max_line_chars, tuning().tail_lines
