"""The DAG, built and validated before anything runs.

``build``: stages and parameters to a ``Graph`` (a networkx DAG with each stage's
bound arguments), every problem collected and raised at once; ``checks``: the
per-stage problems; ``ordering``: the topological order and the cycle report;
``render``: text, Mermaid and dot. Imports only ``pipeline`` and the bottom layer.
"""
