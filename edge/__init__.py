"""hemascope device runtime: capture, quality control, detection, counting, storage, reports."""

__version__ = "0.1.0"
