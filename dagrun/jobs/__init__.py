"""Scheduled jobs: ``dagrun schedule``, ``dagrun backfill`` and run retention.

    cron.py       pure: cron expressions and zones, fire times as UTC instants,
                  the catch-up decision over the ticks that passed (no clock inside)
    loop.py       the foreground scheduler: sleeps until the next tick (a signal
                  wakes it), runs each tick as a ``dagrun run`` child process,
                  records every decision as a ``schedule_tick`` event
    backfill.py   one run per logical date of a range, skipping dates that
                  already succeeded (read from the run history)
    retention.py  which run directories to delete (``--keep-runs``, ``--older-than``)
    hooks.py      the ``--on-failure`` shell command

The scheduler's state lives in ``<state-dir>/schedule/<pipeline>/``:
``state.json`` holds the last tick handled as a UTC instant (so a restarted
scheduler knows what it missed) and ``events.jsonl`` every ``schedule_tick``.
"""
