"""`python -m edge` is the `hemascope` command."""

from edge.cli.main import main

main()
