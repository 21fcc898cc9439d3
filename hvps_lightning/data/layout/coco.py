"""The COCO panoptic layout (KITTI panoptic): ``<split>/images/``, ``<split>/annotations/``, the JSON."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hvps_lightning.data.layout.base import (
    IMAGE_SUFFIXES,
    FrameFiles,
    LayoutScan,
    Problem,
    SequenceFiles,
    frame_number,
    missing_folder,
    sorted_files,
    split_folders,
)
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.coco_panoptic import (
    COCO_PANOPTIC_LAYOUT,
    CocoPanoptic,
    PanopticImage,
    category_to_class,
    read_coco_panoptic,
)
from hvps_lightning.structures.specs import DatasetSpec


def scan_coco(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    """Walk a COCO panoptic root (see :func:`hvps_lightning.data.layout.scan_root`)."""
    scan = LayoutScan("coco_panoptic", spec.splits)
    wanted = split_folders(spec.splits, folders)
    present = [f for f in wanted if (root / f).is_dir()]
    if not present:
        expected = COCO_PANOPTIC_LAYOUT["images"].format(folder="<split>")
        scan.problems.append(
            Problem(
                root,
                f"wrong layout: none of the split folders {', '.join(wanted)} found (expected {expected})",
            )
        )
        return scan
    for folder, (labelled, official) in wanted.items():
        if not (root / folder).is_dir():
            scan.warnings.append(missing_folder(root / folder, official))
            continue
        image_dir = root / COCO_PANOPTIC_LAYOUT["images"].format(folder=folder)
        json_path = root / COCO_PANOPTIC_LAYOUT["json"].format(folder=folder)
        png_dir = root / COCO_PANOPTIC_LAYOUT["png_dir"].format(folder=folder)
        if not image_dir.is_dir():
            scan.problems.append(Problem(image_dir, "wrong layout: image folder missing"))
            continue
        images = sorted_files(image_dir, IMAGE_SUFFIXES)
        if not images:
            scan.problems.append(Problem(image_dir, "no images"))
            continue
        coco: CocoPanoptic | None = None
        if json_path.is_file() or labelled:
            try:
                coco = read_coco_panoptic(json_path, png_dir)
            except HVPSError as exc:
                scan.problems.append(Problem(json_path, str(exc).removeprefix(f"{json_path}: ")))
                continue
            if not png_dir.is_dir():
                scan.problems.append(Problem(png_dir, "wrong layout: folder of panoptic PNGs missing"))
                continue
        class_of_category = None
        by_name: dict[str, PanopticImage] = {}
        if coco is not None:
            class_of_category = category_to_class(coco.categories, spec.class_names, spec.ignore_label)
            unknown = [c for c in coco.categories if class_of_category.get(int(c["id"])) == spec.ignore_label]
            if unknown:
                names = ", ".join(f"{c['id']} {c.get('name', '?')!r}" for c in unknown[:8])
                scan.warnings.append(
                    f"{json_path}: categories read as void (not classes of {spec.name}): {names}"
                )
            by_name = {Path(im.file_name).name: im for im in coco.images}
            category_ids = {int(c["id"]) for c in coco.categories}
            for im in coco.images:
                bad = sorted({s.category_id for s in im.segments} - category_ids)
                if bad:
                    scan.problems.append(
                        Problem(
                            png_dir / im.annotation_file,
                            f"segments of categories {', '.join(map(str, bad))} not in the JSON's categories",
                        )
                    )
        seen_pngs: set[str] = set()
        for image in images:
            frame = FrameFiles(image.stem, frame_number(image.stem), image)
            key = f"{folder}/{image.stem}"
            if coco is not None:
                entry = by_name.pop(image.name, None)
                # A bad image stays in the scan (unlabelled) so that a dataset selecting it
                # finds its problem by sequence key.
                if entry is None:
                    if labelled:
                        scan.problems.append(
                            Problem(image, f"image without its annotation in {json_path}", key)
                        )
                else:
                    label = png_dir / entry.annotation_file
                    seen_pngs.add(entry.annotation_file)
                    if label.is_file():
                        frame = FrameFiles(image.stem, frame.number, image, label, entry)
                    else:
                        scan.problems.append(Problem(image, f"image without its panoptic map ({label})", key))
            scan.sequences.append(
                SequenceFiles(
                    folder, image.stem, [frame], frame.label is not None, None, class_of_category, image_dir
                )
            )
        for name, entry in sorted(by_name.items()):
            scan.problems.append(
                Problem(
                    png_dir / entry.annotation_file, f"annotation without its image (no {image_dir / name})"
                )
            )
        if png_dir.is_dir():
            for png in sorted_files(png_dir, (".png",)):
                if (
                    coco is not None
                    and png.name not in seen_pngs
                    and png.name not in {e.annotation_file for e in by_name.values()}
                ):
                    scan.problems.append(Problem(png, f"panoptic PNG not listed in {json_path}"))
    return scan

