"""Sweeps on Ray Tune: search spaces, the trainable, the runner, tracking, job submission."""
