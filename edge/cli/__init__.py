"""The `hemascope` command (typer): the only room that prints."""
