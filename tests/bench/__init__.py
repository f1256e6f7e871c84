"""dagrun's benchmark suite: dagrun against its peers, side by side, in one run.

``python -m tests.bench [--quick] [--only WORKLOAD] [--json PATH]`` (``make bench``).

::

    __main__   parse options, calibrate, run the plan, print and write the results
    workloads  the eight workloads (handoff, overhead, parallel, memory, startup,
               workflow, scaling, liveview): their cases, peers, and how a
               sample is scored
    tasks      the plain task functions and the DAG every peer runs
    stages     the same functions as dagrun stages; DAG -> dagrun.Pipeline;
               the scaling workload's maps
    workflow   WfCommons instances, scaled; lower bound and list schedule;
               dagrun (twice), `dagrun run`, Dask on each (wfstages: the task,
               wf_cli: the instance as a pipeline file)
    scaling    per-task cost at 1k-100k tasks and the driver's ru_maxrss;
               console modes (JSON to a pipe, none, live view on a pty)
    three*     the start-up comparison: a three-stage pipeline and the same
               three functions in a plain Pool script
    peers      one class per engine (floor, dagrun, Pool, ProcessPoolExecutor,
               shared_memory by hand, Dask x2, Ray, joblib), each running a DAG
    child      one measurement in a fresh process
    startup    the startup workload's commands and the hello pipeline
    monitor    peak memory of a process tree + /dev/shm, sampled every ~10 ms
    harness    interleaved repetitions, one child each; leftover processes and
               /dev/shm entries found and cleaned up
    report     medians, ratios against the floor and dagrun, goals met / not met,
               the terminal table, the README section and the JSON
               (report_more: the workflow, scaling and liveview tables and goals)

The suite lives under ``tests/`` but is not collected by pytest
(``tests/conftest.py``: ``collect_ignore = ["bench"]``): it measures, it
never asserts.
"""
