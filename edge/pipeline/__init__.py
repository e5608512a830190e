"""Pipeline: what happens to one field (quality control, second stage, evidence) as plain
steps on a typed job, the runner that threads them, and the start and finish of a session."""
