from dagrun import stage
import sys


@stage
def quits() -> int:
    sys.exit(3)
