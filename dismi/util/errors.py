"""The one exception type the library raises for bad inputs; its message is a single line."""


class DismiError(Exception):
    """A user-facing failure: the message names the bad value and the way out."""
