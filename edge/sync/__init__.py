"""Sync: the typed wire models shared with the hub, the payload built from them, the upload
client and USB bundles. No OpenCV, no numpy."""
