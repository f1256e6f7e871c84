"""The ``dagrun`` command: thin typer commands, one module per command group.

``main`` (run, list, graph, runs, clean), ``jobs`` (schedule, backfill), ``cache``
(explain, the cache part of clean), ``report``; ``options`` declares the shared
options once and maps errors to exit codes.
"""
