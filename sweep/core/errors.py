"""The one exception type for mistakes a user can make (config, data, storage).

The CLI turns a :class:`UserError` into one line on stderr and exit status 2, with no traceback.
Messages name the key or file, the rule, the value, and how to fix it.
"""


class UserError(Exception):
    """A problem the user can fix; ``str(error)`` is the one-line message shown to them."""

    def __init__(self, message: str) -> None:
        # One line, whatever the message quotes (a key or a file name holding a newline).
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class StopRequested(Exception):
    """Raised by training after an epoch (and a checkpoint) when its worker was asked to stop:
    the trial is released and queued again, not failed."""
