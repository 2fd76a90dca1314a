"""User errors: one line that names the problem and the fix, printed by the CLI without a traceback."""


class GenlabError(Exception):
    """Something the user can fix (a missing folder, a config that disagrees with itself).

    A traceback means a bug in genlab; a `GenlabError` means the user's input needs changing, so the CLI
    prints only its message.
    """
