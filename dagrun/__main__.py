"""``python -m dagrun``: the command-line interface."""

from .cli.main import main

main()
