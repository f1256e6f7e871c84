"""Run options are validated in one place; the README's settings table matches the code."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

import dagrun
from dagrun.errors import UsageError
from dagrun.settings import Environment, RunOptions, Tuning, settings_table
from tests.conftest import RESOURCES

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_settings_table_is_current():
    """The table between the settings markers is exactly what the code generates."""
    text = README.read_text()
    start = text.index("<!-- settings:start -->\n") + len("<!-- settings:start -->\n")
    end = text.index("\n<!-- settings:end -->")
    assert text[start:end] == settings_table()


def test_every_tuning_number_has_a_reason():
    """Each field of Tuning appears in the table with a non-empty reason."""
    table = settings_table()
    for name in Tuning.__dataclass_fields__:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.rsplit("|", 2)[-2].strip(), name


def test_an_unknown_executor_is_a_usage_error(tmp_path):
    """An executor name nobody registered is refused before the pipeline loads."""
    from dagrun import executors

    with pytest.raises(UsageError, match="unknown executor 'nope'"):
        executors.check("nope")
    with pytest.raises(UsageError, match="unknown executor 'nope'"):
        dagrun.run(str(tmp_path / "never_loaded.py"), executor="nope", state_dir=tmp_path)


def test_a_runs_tuning_is_its_own_with_the_environment_on_top():
    """`tuning=` sets a run's numbers; DAGRUN_HOLD_MIN still applies over them."""
    mine = Tuning(prefetch=3, hold_min=1 << 20)
    assert RunOptions.build(environ=Environment(), tuning=mine).tuning == mine
    env = Environment(hold_min="off")
    built = RunOptions.build(environ=env, tuning=mine).tuning
    assert (built.prefetch, built.hold_min) == (3, -1)


@pytest.mark.parametrize("arguments", [
    {"timeout": -1}, {"workers": 0}, {"max_runtime": "soon"}, {"memory": "lots"},
    {"start_method": "thread"}, {"tuning": {"prefetch": 2}}, {"log_format": "xml"},
    {"run_date": "30/11/2026"}, {"max_tasks_per_worker": 0}, {"bogus": 1},
])
def test_a_bad_option_is_a_usage_error(arguments):
    """Every out-of-range or malformed option is refused before anything runs."""
    with pytest.raises(UsageError):
        RunOptions.build(environ=Environment(), **arguments)


def test_options_read_the_environment_once(tmp_path):
    """The state and cache directories come from the environment when not given."""
    env = Environment.read({"DAGRUN_STATE_DIR": str(tmp_path / "s"), "DAGRUN_HOLD_MIN": "off"})
    options = RunOptions.build(environ=env, run_date="2026-11-30", max_runtime="2m",
                               memory="512M")
    assert options.state_dir == tmp_path / "s" and options.cache_dir == tmp_path / "s" / "cache"
    assert options.tuning.hold_min == -1 and options.max_runtime == 120.0
    assert options.run_date == date(2026, 11, 30) and options.memory == 512 << 20
    later = RunOptions.build(environ=env, run_date="2026-11-30T02:30")
    assert isinstance(later.run_date, datetime)


def test_a_state_dir_that_is_a_file_is_refused(tmp_path):
    """--state-dir naming a file is a usage error, not an internal one."""
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(UsageError, match="is a file"):
        RunOptions.build(environ=Environment(), state_dir=path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_runs_tuning_is_in_force_in_its_workers(method, tmp_path):
    """Workers read the run's own numbers under every start method; the defaults return after."""
    from dagrun.settings import tuning

    mine = Tuning(max_line_chars=321, tail_lines=7)
    with dagrun.run(str(RESOURCES / "tuning_probe.py"), tuning=mine, start_method=method,
                    workers=1, state_dir=tmp_path, log_format="none", no_cache=True) as result:
        assert result.status == "succeeded"
        assert tuple(result["numbers"]) == (321, 7)
    assert tuning() == Tuning()
