"""Every setting of a run in one place: the run's options, the environment, the tuning.

    dagrun.run(**arguments) ─┐
                             ├─▶ RunOptions.build ─▶ RunOptions (frozen, validated)
    os.environ (read once) ──┘                         └─ .tuning: Tuning (frozen)

``RunOptions`` holds every argument of ``dagrun.run`` after validation, plus
what the environment says (read here and nowhere else); a bad value is a
``UsageError`` before anything runs. ``Tuning`` names every number that
shapes scheduling, each with the reason for its value; the README's settings
table lists the same fields (a test keeps the two in step).

Environment variables:

    DAGRUN_STATE_DIR   state directory (runs, locks, cache) when --state-dir is not given
    DAGRUN_CACHE_DIR   cache directory when --cache-dir is not given
    DAGRUN_SHM_DIR     where shared-memory segments live (default /dev/shm)
    DAGRUN_HOLD_MIN    bytes from which a result may stay in its worker ("off": never)
    DAGRUN_CACHE_MAX_SIZE  the cache directory's size cap (default 20G; "off": none)
    DAGRUN_DEBUG       show dagrun's own traceback for an internal error
    TZ                 the local time zone of cron schedules (else /etc/localtime)

Modules: ``options`` (``RunOptions``, start methods), ``environment``
(``Environment``, the README's settings table), ``numbers`` (``Tuning`` and the
one in force).
"""

from __future__ import annotations

from .environment import ENVIRONMENT, Environment, cache_max_from, hold_min_from, settings_table
from .numbers import TUNING, Tuning, put_in_force, tuning
from .options import (
    LOG_FORMATS,
    START_METHODS,
    RunOptions,
    default_start_method,
    parse_run_date,
    usable_cpus,
)

__all__ = [
    "ENVIRONMENT",
    "LOG_FORMATS",
    "START_METHODS",
    "TUNING",
    "Environment",
    "RunOptions",
    "Tuning",
    "cache_max_from",
    "default_start_method",
    "hold_min_from",
    "parse_run_date",
    "put_in_force",
    "settings_table",
    "tuning",
    "usable_cpus",
]
