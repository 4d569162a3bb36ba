"""Exceptions a user can cause. The CLI prints their message and exits 2, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad spec, missing dataset, wrong option).

    `problems` holds one line per problem when several are reported at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)
