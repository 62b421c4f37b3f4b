"""Passes over the model: readable views of large graphs, diffs, which steps to draw, growth."""
