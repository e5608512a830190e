"""Site: a clinic's reviewed cells (beside the model's output) and the classifier
calibrated from them. Doors: core, config, inference, storage, pipeline."""
