"""The one error type the CLI turns into a one-line message with a fix."""


class HemascopeError(Exception):
    """A problem the operator can fix: what is wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — {fix}")
        self.problem = problem
        self.fix = fix
