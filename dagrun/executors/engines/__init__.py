"""Dask and Ray: the driver side (``engine``, ``dask``, ``ray``), the task body as
it runs on an engine worker (``remote``), and the checks made before submitting
(``checks``: versions, feasibility, pickling by value).
"""
