"""Workers that die: by os._exit, by SIGKILL; and an unrelated stage that must finish."""

import os
import signal
import time

from dagrun import stage


@stage
def exits() -> int:
    os._exit(7)


@stage
def killed() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@stage
def survivor(delay: float = 0.2) -> str:
    time.sleep(delay)
    return "alive"
