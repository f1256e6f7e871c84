"""The workflow workload's instance as a pipeline file, for ``dagrun run tests/bench/wf_cli.py``.

The instance (recipe, size, seed, scaling) comes as the case's JSON in
``$DAGRUN_BENCH_WF``; ``tests.bench.workflow`` builds the same pipeline the
API runs use.
"""

from __future__ import annotations

from tests.bench.workflow import cli_pipeline

pipeline = cli_pipeline()
