"""``dagrun explain`` and ``dagrun clean --cache`` through the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here starts processes

ROOT = Path(__file__).parent.parent
RESOURCES = Path(__file__).parent / "resources"
DAGRUN = str(Path(sys.executable).with_name("dagrun"))  # the interpreter running the tests


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the cache fixture project whose cache was filled as by a finished run."""
    target = tmp_path / "project"
    shutil.copytree(RESOURCES / "cache_project", target)
    subprocess.run(
        [sys.executable, str(RESOURCES / "cache_tool.py"), "populate", "pipeline.py",
         ".dagrun/cache"],
        cwd=target, check=True, timeout=60,
    )
    return target


def dagrun(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGRUN_")}
    return subprocess.run(
        [DAGRUN, *args], cwd=project, capture_output=True, text=True, timeout=60, env=env
    )


def explained(project: Path, *args: str) -> dict[str, dict]:
    out = dagrun(project, "explain", "pipeline.py", "--json", *args)
    assert out.returncode == 0, out.stderr
    return {row["stage"]: row for row in map(json.loads, out.stdout.splitlines())}


def test_explain_unchanged_pipeline(project: Path) -> None:
    """After a run, explain says every cacheable stage is cached and names untracked globals."""
    out = dagrun(project, "explain", "pipeline.py")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("total ") and "skip  cached" in line for line in lines)
    assert "not tracked: pipeline.log (logging.Logger)" in out.stdout
    assert "clock     run   cache=False" in out.stdout
    assert "2 of 6 stage(s) would run" in out.stdout
    rows = explained(project)
    assert [n for n, r in rows.items() if r["would_run"]] == ["clock", "stamped"]


def test_explain_names_what_changed(project: Path) -> None:
    """explain names the changed helper, constant, parameter, file and upstream."""
    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("FACTOR = 3", "FACTOR = 4"))
    (project / "watched.txt").write_text("v2\n")
    rows = explained(project, "--param", "n=9")
    assert rows["source"]["reason"] == (
        "constant helpers.FACTOR changed; parameter 'n' changed (4 -> 9)"
    )
    assert rows["notes"]["reason"] == "watched file 'watched.txt' changed"
    assert rows["combined"]["reason"] == "upstream 'notes' will run; upstream 'source' will run"
    assert rows["total"]["would_run"]


def test_explain_names_a_changed_helper_of_a_helper(project: Path) -> None:
    """A function two calls deep is named as the changed helper."""
    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("return x * FACTOR", "return x * FACTOR + 1"))
    (project / "input.csv").write_text("a,b\n9,9\n")
    rows = explained(project)
    assert rows["source"]["reason"] == "helper helpers._inner changed"
    assert rows["notes"]["reason"] == "file of parameter 'table' changed"
    assert list(explained(project, "--target", "notes")) == ["notes"]


def test_explain_reports_a_damaged_entry(project: Path) -> None:
    """A truncated entry is reported by explain as damaged and due to be recomputed."""
    key = explained(project)["total"]["key"]
    data = next((project / ".dagrun" / "cache" / "entries" / key[:2] / key).glob("value.*"))
    os.truncate(data, data.stat().st_size - 1)
    assert "damaged" in explained(project)["total"]["reason"]


def test_explain_invalid_parameter_exits_2(project: Path) -> None:
    """An unknown parameter is a usage error (exit 2), one line, no traceback."""
    out = dagrun(project, "explain", "pipeline.py", "--param", "nope=1")
    assert out.returncode == 2 and "unknown parameter 'nope'" in out.stderr
    assert "Traceback" not in out.stderr


def test_clean_cache_options(project: Path) -> None:
    """clean --cache --verify/--older-than/--max-size trims; plain --cache empties it."""
    entries = list((project / ".dagrun" / "cache" / "entries").glob("*/*"))
    assert len(entries) == 5
    out = dagrun(project, "clean", "--cache", "--verify")
    assert out.returncode == 0 and "removed 0 item(s)" in out.stdout, out.stderr
    old = time.time() - 30 * 86400
    os.utime(entries[0] / "meta.json", (old, old))
    out = dagrun(project, "clean", "--cache", "--older-than", "7d")
    assert out.returncode == 0 and entries[0].name in out.stdout, out.stderr
    out = dagrun(project, "clean", "--cache", "--max-size", "1")
    assert out.returncode == 0 and "removed 4 item(s)" in out.stdout, out.stderr
    out = dagrun(project, "clean", "--cache", "--max-size", "lots")
    assert out.returncode == 2 and "--max-size" in out.stderr


def test_clean_without_cache_keeps_the_cache(project: Path) -> None:
    """Plain clean leaves cache entries alone; clean --cache removes them all."""
    assert dagrun(project, "clean").returncode == 0
    assert len(list((project / ".dagrun" / "cache" / "entries").glob("*/*"))) == 5
    assert dagrun(project, "clean", "--cache").returncode == 0
    assert list((project / ".dagrun" / "cache" / "entries").glob("*/*")) == []
    assert explained(project)["total"]["reason"] == "no cache entry (no earlier run recorded)"
