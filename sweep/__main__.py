"""`python -m sweep ...` is the same as the `sweep` console script."""

from sweep.cli import main

main()
