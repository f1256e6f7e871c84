"""The run's control plane: one loop, one writer of the run's state.

``runner`` is the loop (plan, dispatch, wait, apply); ``scheduler`` the pure
state machine over the graph, whose transitions only the loop fires;
``planning`` turns ready stages into task specs (with ``ready``'s queue and
``slicing``) and hands the loop ``decisions`` to apply; ``policies`` are pure decisions;
``ledger`` knows who holds each result; ``incremental`` is one run's use of the
cache; ``estimates`` reads recent runs; ``signals``, ``lock`` and ``run_ends``
guard and close the run. Everything below it (events, executors, cache, store,
graph, pipeline) is reached through those layers' public names.
"""
