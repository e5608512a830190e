"""Reports: what a stored session counted, with which models, from the store alone."""
