"""The one exception type graphscope raises for bad input, so callers can catch it."""


class GraphscopeError(Exception):
    """A problem with what the user asked for, explained in the message."""
