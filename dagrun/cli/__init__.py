"""The ``dagrun`` command: thin typer commands, one module per command group.

``main`` (run, validate, list, graph, clean, runs), ``jobs`` (schedule, backfill),
``cache`` (explain, the cache part of clean), ``report``; each adds its commands
with ``register(app)``. ``options`` declares the run options once (``run``,
``schedule`` and ``backfill`` take them) and maps errors to exit codes.
"""
