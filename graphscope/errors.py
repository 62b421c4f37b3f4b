"""The one exception type graphscope raises for bad input, so callers can catch it."""


class GraphscopeError(Exception):
    """A problem with what the user asked for, explained in the message."""


class LayoutError(GraphscopeError):
    """Graphviz could not lay out one picture (it ran past its time limit, or failed); what
    the picture shows is still captured and saved."""
