"""hvps-lightning: human video panoptic segmentation (HVPS) in PyTorch Lightning."""

__version__ = "0.1.0"
