"""Plain values and small helpers every room shares: frames, detections, records, labels,
errors, file writes. Standard library and numpy only."""
