"""dagrun's benchmark suite: dagrun against its peers, side by side, in one run.

``python -m tests.bench [--quick] [--only WORKLOAD] [--json PATH]`` (``make bench``).

::

    __main__   parse options, calibrate, run the plan, print and write the results
    workloads  the five workloads (handoff, overhead, parallel, memory, startup):
               their cases, peers, and how a sample is scored
    tasks      the plain task functions and the DAG every peer runs
    stages     the same functions as dagrun stages; DAG -> dagrun.Pipeline
    peers      one class per engine (floor, dagrun, Pool, ProcessPoolExecutor,
               shared_memory by hand, Dask x2, Ray, joblib), each running a DAG
    child      one measurement in a fresh process
    startup    the startup workload's commands and the hello pipeline
    monitor    peak memory of a process tree + /dev/shm, sampled every ~10 ms
    harness    interleaved repetitions, one child each; leftover processes and
               /dev/shm entries found and cleaned up
    report     medians, ratios against the floor and dagrun, goals met / not met,
               the terminal table, the README section and the JSON

The suite lives under ``tests/`` but is not collected by pytest
(``tests/conftest.py``: ``collect_ignore = ["bench"]``): it measures, it
never asserts.
"""
