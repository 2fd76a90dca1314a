"""User errors: one line that names the problem and the fix, printed by the CLI without a traceback."""


class GenlabError(Exception):
    """Something the user can fix (a missing folder, a config that disagrees with itself).

    A traceback means a bug in genlab; a `GenlabError` means the user's input needs changing, so the CLI
    prints only its message.
    """


def first_line(error: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, at most `limit` characters (its type when it has no message):
    what a one-line `GenlabError` quotes of a library's multi-line error."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
