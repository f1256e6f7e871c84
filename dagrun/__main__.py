"""``python -m dagrun``: the command-line interface."""

from .cli import main

main()
