"""Convert trained checkpoints into device artifacts, each with a manifest."""
