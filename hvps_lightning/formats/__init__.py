"""Readers and writers of the dataset formats: STEP panoptic PNG, MOTS txt, COCO panoptic.

Every writer writes a temporary file and renames it, so files appear whole or not at all;
every reader raises :class:`~hvps_lightning.errors.HVPSError` naming the file when it is bad.
"""

from hvps_lightning.formats.coco_panoptic import (
    COCO_PANOPTIC_LAYOUT,
    CocoPanoptic,
    PanopticImage,
    PanopticSegment,
    category_to_class,
    id_to_rgb,
    read_coco_panoptic,
    read_panoptic_png,
    rgb_to_id,
    segments_from_ids,
    to_semantic_instance,
    write_coco_panoptic,
    write_coco_panoptic_json,
    write_panoptic_png,
)
from hvps_lightning.formats.mots_txt import (
    IGNORE_CLASS,
    IGNORE_ID,
    MOTSObject,
    check_no_overlap,
    read_mots_txt,
    write_mots_txt,
)
from hvps_lightning.formats.png import read_png, write_png
from hvps_lightning.formats.step_png import decode_step, encode_step, read_step_png, write_step_png

__all__ = [
    "COCO_PANOPTIC_LAYOUT",
    "IGNORE_CLASS",
    "IGNORE_ID",
    "CocoPanoptic",
    "MOTSObject",
    "PanopticImage",
    "PanopticSegment",
    "category_to_class",
    "check_no_overlap",
    "decode_step",
    "encode_step",
    "id_to_rgb",
    "read_coco_panoptic",
    "read_mots_txt",
    "read_panoptic_png",
    "read_png",
    "read_step_png",
    "rgb_to_id",
    "segments_from_ids",
    "to_semantic_instance",
    "write_coco_panoptic",
    "write_coco_panoptic_json",
    "write_mots_txt",
    "write_panoptic_png",
    "write_png",
    "write_step_png",
]
