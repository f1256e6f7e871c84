"""Shared fixtures: executor configurations, a state directory, and a leak check
that every test passes through (no segment in /dev/shm, no worker process left)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import alive

collect_ignore = ["bench"]

RESOURCES = Path(__file__).parent / "resources"
ROOT = Path(__file__).parent.parent

# One behaviour suite, every way of running it.
EXECUTORS = [
    pytest.param(("inline", None), id="inline"),
    pytest.param(("local", "fork"), id="fork"),
    pytest.param(("local", "forkserver"), id="forkserver"),
    pytest.param(("local", "spawn"), id="spawn"),
    pytest.param(("dask", None), id="dask"),  # a real LocalCluster: processes, TCP
    pytest.param(("ray", None), id="ray"),  # a real local Ray, one session per test module
]


_OTHER_METHODS = ("forkserver", "spawn")

# Parameter values that mean a test starts processes: an executor other than
# inline, or a start method. A test parametrized with one is marked ``slow``.
PROCESS_PARAMS = frozenset({"local", "fork", "forkserver", "spawn", "dask", "ray"})


def starts_processes(item: pytest.Item) -> bool:
    """Whether a test is parametrized with a process-starting executor or start method."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    for value in callspec.params.values():
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, str) and v in PROCESS_PARAMS for v in values):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test run under a process-starting executor; then, with
    DAGRUN_TEST_DEFAULT_METHOD set, run each test once, under the default start method.

    The second interpreter's pass of ``make test`` uses the latter: the behaviour
    under every start method is already covered by the first pass.
    """
    for item in items:
        if starts_processes(item):
            item.add_marker(pytest.mark.slow)
    if not os.environ.get("DAGRUN_TEST_DEFAULT_METHOD"):
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        ident = callspec.id if callspec is not None else ""
        (drop if any(m in ident.split("-") for m in _OTHER_METHODS) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# Under ``make test-fast`` (DAGRUN_TEST_FAST set) a test not marked ``slow`` that starts
# a process fails, naming the marker: the fast pass stays fast as tests are added.
_PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
                             "os.system", "os.exec", "subprocess.Popen"})
_started: list[str] = []  # what the running test started, by audit event or multiprocessing


def _watch_process_starts() -> None:
    import multiprocessing.util

    def hook(event: str, args: tuple) -> None:
        if event in _PROCESS_EVENTS:
            _started.append(event)

    sys.addaudithook(hook)
    spawnv = multiprocessing.util.spawnv_passfds  # spawn and forkserver start here, unaudited

    def spawnv_passfds(*args, **kwargs):
        _started.append("multiprocessing spawn")
        return spawnv(*args, **kwargs)

    multiprocessing.util.spawnv_passfds = spawnv_passfds


if os.environ.get("DAGRUN_TEST_FAST"):
    _watch_process_starts()


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request):
    """With DAGRUN_TEST_FAST set, a test that starts a process must be marked ``slow``."""
    _started.clear()
    yield
    if _started and request.node.get_closest_marker("slow") is None:
        started = sorted(set(_started))
        _started.clear()
        pytest.fail(f"this test starts processes ({', '.join(started)}): mark it "
                    f"@pytest.mark.slow so that make test-fast leaves it out", pytrace=False)


def shm_entries() -> set[str]:
    """Names in /dev/shm that belong to dagrun runs of this process or of drivers now gone.

    Segments are named ``dagrun-<driver pid>-...``; those of another live driver
    (a run outside this test session) are not this test's to judge.
    """
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith("dagrun")]
    except FileNotFoundError:
        return set()
    return {n for n in names if not _foreign_live_owner(n)}


def _foreign_live_owner(name: str) -> bool:
    parts = name.split("-")
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    return alive(pid) and pid not in set(children())


def children() -> list[int]:
    """Live child processes of this test process, other than multiprocessing helpers."""
    try:
        import psutil
    except ImportError:
        return [p.pid for p in multiprocessing.active_children()]
    names = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(n in cmd for n in names) or child.status() == psutil.STATUS_ZOMBIE:
            continue
        out.append(child.pid)
    return out


_ray_pids: set[int] = set()  # a module's Ray session: not a leak while it runs


def _left() -> list[int]:
    return [pid for pid in children() if pid not in _ray_pids and not _is_ray(pid)]


def _is_ray(pid: int) -> bool:
    if not _ray_pids:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ray" in f.read()
    except OSError:
        return False


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves /dev/shm and the process table as it found them."""
    before = shm_entries()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (shm_entries() - before or _left()):
        time.sleep(0.05)
    leaked = shm_entries() - before
    assert not leaked, f"shared memory leaked: {sorted(leaked)}"
    assert not _left(), f"processes left running: {_left()}"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for a module's ray cases (starting Ray costs seconds); gone at its end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    _ray_pids.update(children())
    yield
    ray.shutdown()
    _ray_pids.clear()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and children():
        time.sleep(0.1)
    assert not children(), f"Ray left processes running: {children()}"


@pytest.fixture(params=EXECUTORS)
def how(request):
    """(executor, start_method) for the behaviour suite."""
    if request.param[0] == "ray":
        request.getfixturevalue("ray_session")
    return request.param


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(autouse=True)
def _importable_resources():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def resource(name: str) -> str:
    """Path of a fixture pipeline file."""
    return str(RESOURCES / f"{name}.py")


def run_resource(name: str, how=("local", "fork"), state_dir: Path | None = None, **kwargs):
    """Run a fixture pipeline quietly with the given (executor, start method)."""
    import dagrun

    executor, method = how
    return dagrun.run(
        resource(name),
        executor=executor,
        start_method=method,
        state_dir=state_dir,
        log_format="none",
        workers=kwargs.pop("workers", 2),
        **kwargs,
    )
