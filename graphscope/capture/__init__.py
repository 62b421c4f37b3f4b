"""Everything that touches torch: the walk, names from the user's frames, source stamps, gradient
hooks and statistics, the recording session, running a user's script, and the deep-graph guard.
What leaves this package is the torch-free model (`graphscope.model`)."""
