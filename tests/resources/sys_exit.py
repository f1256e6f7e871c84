import sys

from dagrun import stage


@stage
def quits() -> int:
    sys.exit(3)
