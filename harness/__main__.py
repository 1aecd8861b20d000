"""``python -m harness``: the same command line as the ``harness`` script."""
from harness._core.cli import main

main()
