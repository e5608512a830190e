"""Capture: where fields of view come from (synthetic, folder, video, cameras) and settle
detection for a hand-moved stage."""
