"""`python -m edge` is the `hemascope` command."""

from edge.cli import main

main()
