"""The one error type the CLI turns into a one-line message with a fix."""


class HemascopeError(Exception):
    """A problem the operator can fix: what is wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — {fix}")
        self.problem = problem
        self.fix = fix


class DiskFull(HemascopeError):
    """No room left on the data dir's disk: stored data is safe, new data cannot be stored."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem, "free space on that disk (sync, then archive old sessions "
                                  "and evidence) and run again; stored fields are safe")
