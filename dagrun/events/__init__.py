"""What a run says: the event log and everything built from it.

``log``: the structured event stream (console + ``events.jsonl``); ``reporter``:
every task event, built once; ``rows`` and ``summary``: the per-stage rows and
the run summary; ``console``: the live view and plain lines; ``history``: past
runs read back from their event files. Imports executors' records, never the
control plane.
"""
