"""Executors: where tasks run. ``base`` holds the protocol and the records that
travel; ``inline`` runs in the calling process; ``local`` is the supervised
process pool; ``worker`` is the task body every executor shares."""
