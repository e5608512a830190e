"""`python -m hub` is the `hemascope-hub` command."""

from hub.cli import main

main()
