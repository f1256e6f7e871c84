"""Authoring: what a user writes and how it is collected.

``@stage`` and the Stage value, ``bind`` / ``include``, the Pipeline, parameter
types (``Secret``) and their conversion, ``@worker_init`` resources, and the
loader that imports a pipeline file or module. Imports nothing of dagrun but
``errors``, ``settings``, ``units`` and ``values``.
"""
