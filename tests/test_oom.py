"""A worker killed by the out-of-memory killer: its task is retried once, alone, and succeeds.

The test makes a memory cgroup (v1 or v2) with a limit that fits one of two
400 MiB stages but not both, and runs ``dagrun run`` inside it. Where this
machine does not let the test make a cgroup, it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, resource

pytestmark = pytest.mark.slow  # every test here starts processes

LIMIT = 700 << 20


def _make_cgroup() -> tuple[Path, str]:
    """A fresh memory cgroup limited to ``LIMIT``: its directory and the limit file's name."""
    name = f"dagrun-test-{uuid.uuid4().hex[:8]}"
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        path, limit = v2 / name, "memory.max"
    else:
        path, limit = v2 / "memory" / name, "memory.limit_in_bytes"
    try:
        path.mkdir()
        (path / limit).write_text(str(LIMIT))
        v2_swap = limit == "memory.max"
        swap = path / ("memory.swap.max" if v2_swap else "memory.memsw.limit_in_bytes")
        if swap.exists():
            try:
                swap.write_text("0" if v2_swap else str(LIMIT))
            except OSError:
                pass
    except OSError as exc:
        if path.exists():
            path.rmdir()
        pytest.skip(f"cannot make a memory cgroup here ({exc.strerror}): the test needs one")
    return path, limit


def test_an_oom_killed_task_is_retried_alone_and_succeeds(tmp_path):
    """Two 400 MiB stages under 700 MiB: one is killed, retried alone, and the run succeeds."""
    cgroup, _ = _make_cgroup()
    state = tmp_path / "state"
    script = (
        f"echo $$ > {cgroup}/cgroup.procs && exec {sys.executable} -m dagrun run "
        f"{resource('oom_pair')} --workers 2 --log-format json --state-dir {state} "
        f"--no-cache --memory 8G"
    )
    try:
        done = subprocess.run(["sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        procs = (cgroup / "cgroup.procs").read_text().split()
        for pid in procs:
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
        cgroup.rmdir()
    events = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    failed = [e for e in events if e["event"] == "task_failed"]
    if not failed:
        pytest.skip("the kernel did not kill a worker under this limit: nothing to retry")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "out-of-memory" in failed[0]["error"]
    retry = next(e for e in events if e["event"] == "task_retrying")
    assert retry["alone"] is True and retry["stage"] == failed[0]["stage"]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"
