"""A module whose import never finishes in time: a worker importing it never says ready."""

import time

time.sleep(60)
