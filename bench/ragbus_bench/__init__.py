"""Benchmarks of the pipeline through a bus, beside hand-written anchors."""
