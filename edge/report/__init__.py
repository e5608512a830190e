"""Reports: what a stored session counted, with which models, from the store alone, and the
documents made from it (JSON, HTML, PDF, FHIR R4)."""
