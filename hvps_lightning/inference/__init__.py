"""Trained models on any video: the model bundle, the streaming ``Pipeline``, and export.

* :mod:`.model`: :class:`InferenceModel`, both networks and their settings, from two
  Lightning checkpoints or a bundle (:mod:`hvps_lightning.formats.bundle`), no Lightning needed;
* :mod:`.frames`: frames from a video file, a folder or glob of images, or arrays;
* :mod:`.pipeline`: :class:`Pipeline`, video -> tracks and panoptic maps, frame by frame;
* :mod:`.outputs`: ``hvps infer``'s files (STEP PNGs, MOTS txt, overlay MP4, JSON lines);
* :mod:`.export`: TorchScript / ONNX of the networks, checked against eager outputs.
"""

from hvps_lightning.inference.frames import Frame, FrameSource, open_frames
from hvps_lightning.inference.model import InferenceModel
from hvps_lightning.inference.pipeline import FrameResult, Pipeline

__all__ = ["Frame", "FrameResult", "FrameSource", "InferenceModel", "Pipeline", "open_frames"]
