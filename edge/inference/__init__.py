"""Inference: model manifests, runtime backends, YOLO decoding, the detector and the
classifiers, occlusion maps."""
