"""`python -m graphscope` is the `graphscope` command."""

from graphscope.cli import main

main(prog_name="graphscope")
