"""The ``--on-failure`` command: a shell command run after a failed or missed run.

It gets ``DAGRUN_RUN_ID`` (empty for a missed tick), ``DAGRUN_STATUS``
(``failed``, ``timed_out``, ``interrupted``, ``lost``, ``locked``, ``invalid``
or ``missed``), ``DAGRUN_PIPELINE``, ``DAGRUN_RUN_DATE`` and ``DAGRUN_STATE_DIR``
in its environment. Its own failure is reported, never fatal: an alerting
command that breaks must not stop the schedule.
"""

from __future__ import annotations

import os
import subprocess
import sys

HOOK_TIMEOUT_S = 300  # an alert that hangs longer than this is abandoned


def run_hook(
    command: str, *, run_id: str | None, status: str, pipeline: str, run_date: str,
    state_dir: str,
) -> int | None:
    """Run ``command`` through the shell; its exit code (None if it timed out)."""
    env = {
        **os.environ,
        "DAGRUN_RUN_ID": run_id or "",
        "DAGRUN_STATUS": status,
        "DAGRUN_PIPELINE": pipeline,
        "DAGRUN_RUN_DATE": run_date,
        "DAGRUN_STATE_DIR": state_dir,
    }
    try:
        done = subprocess.run(
            # Its stdout goes to stderr: in JSON mode stdout carries JSON lines only.
            command, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr,
            timeout=HOOK_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"dagrun: --on-failure command ran past {HOOK_TIMEOUT_S} s and was stopped",
              file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"dagrun: --on-failure command exited {done.returncode}", file=sys.stderr)
    return done.returncode
