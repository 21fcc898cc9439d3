"""Benchmark-server submission archives: predictions checked complete and packed in the server's layout.

Where the layouts come from:

* **MOTS20** (MOTSChallenge, ``motchallenge.net``): "a single .zip file; the results for each
  sequence must be stored in a separate .txt file in the archive's root folder; the file name
  must be exactly like the sequence name" (motchallenge.net/instructions), in the MOTS txt format
  of the ground truth (``frame id class_id height width rle``, frames from 1;
  vision.rwth-aachen.de/page/mots, TrackEval's docs/MOTS-format.txt). The server's evaluation,
  TrackEval's ``MOTSChallenge`` dataset, refuses a frame number outside ``1..seqLength`` and
  overlapping masks within a frame, whatever their class: both are checked here.
* **STEP** (MOTChallenge-STEP, KITTI-STEP): one three-channel PNG per frame, R = semantic class,
  G = instance // 256, B = instance % 256, in a folder per sequence, ``<sequence>/<frame>.png``:
  the layout of the ground truth (``panoptic_maps/<split>/<sequence>/<frame>.png``) and of
  deeplab2's raw predictions for the STEP servers (trainer/vis.py ``store_raw_predictions``,
  ``raw_panoptic/<sequence>/<image name>.png`` with ``raw_panoptic_format:
  three_channel_png``, "adopted in ... KITTI-STEP and MOTChallenge-STEP"). Sequence folders
  carry the label release's names (``0001``, ``0007``); frame files the image names
  (``000001.png``: MOTChallenge numbers frames from 1, KITTI from 0).

A submission is complete or is not written: every test sequence, every frame of it, each
file readable in its format. The archive is written under a temporary name and renamed, with
fixed timestamps (the same predictions give the same bytes).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.mots_txt import IGNORE_CLASS, MOTSObject, read_mots_txt
from hvps_lightning.formats.step_png import read_step_panoptic
from hvps_lightning.io import atomic_path
from hvps_lightning.structures.masks import mask_areas, merge_masks
from hvps_lightning.structures.specs import DatasetSpec, get_spec

#: the timestamp of every archive member (zip's earliest), so an archive depends only on its content
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Benchmark:
    """A test server: which dataset's split it scores and how frames are numbered.

    Attributes:
        name: ``motchallenge_step``, ``kitti_step`` or ``mots20``.
        dataset: the dataset spec of its sequences.
        split: the split it scores.
        first_frame: the number of a sequence's first frame (MOTChallenge 1, KITTI 0).
    """

    name: str
    dataset: str
    split: str = "test"
    first_frame: int = 1

    @property
    def spec(self) -> DatasetSpec:
        """The dataset spec of its sequences."""
        return get_spec(self.dataset)


STEP_BENCHMARKS: dict[str, Benchmark] = {
    "motchallenge_step": Benchmark("motchallenge_step", "motchallenge_step", first_frame=1),
    "kitti_step": Benchmark("kitti_step", "kitti_step", first_frame=0),
}
MOTS_BENCHMARKS: dict[str, Benchmark] = {"mots20": Benchmark("mots20", "mots", first_frame=1)}


@dataclass
class SubmissionReport:
    """What an archive holds.

    Attributes:
        archive: the zip file written.
        benchmark: the benchmark it is for.
        frames: sequence -> frames (STEP: PNG files; MOTS: frames of the sequence).
        objects: MOTS: sequence -> object lines.
        left_out: sequences found in the predictions that the benchmark does not score.
    """

    archive: Path
    benchmark: str
    frames: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        size = self.archive.stat().st_size / 2**20
        parts = []
        for sequence, frames in self.frames.items():
            objects = f", {self.objects[sequence]} objects" if sequence in self.objects else ""
            parts.append(f"{sequence}: {frames} frames{objects}")
        line = f"{self.archive}: {self.benchmark} {', '.join(parts)} ({size:.1f} MiB)"
        if self.left_out:
            line += f"; left out (not scored by the benchmark): {', '.join(self.left_out)}"
        return line


def expected_frames(
    benchmark: Benchmark, root: str | Path | None = None, sequences: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """The frame names (file stems) of every sequence the benchmark scores.

    From the dataset root's images when ``root`` is given (``images/<split>/<seq>/`` for STEP,
    ``<split>/<seq>/img1/`` for MOTS20), else from the official lengths in the specs.

    Raises:
        HVPSError: if a sequence's frames can be known neither way.
    """
    split = benchmark.spec.split(benchmark.split)
    names = list(sequences) if sequences is not None else list(split.sequences)
    found: dict[str, list[str]] = {}
    for name in names:
        if root is not None:
            folder = _image_folder(benchmark, Path(root), name)
            images = _images(folder)
            if not images:
                raise file_error(folder, f"no images of test sequence {name} (--root)")
            found[name] = [p.stem for p in images]
        elif name in split.frames:
            first = benchmark.first_frame
            found[name] = [f"{i:06d}" for i in range(first, first + split.frames[name])]
        else:
            raise HVPSError(
                f"{benchmark.name}: the number of frames of test sequence {name} is not recorded here; "
                "give --root the dataset root to read them from its images"
            )
    return found


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def _image_folder(benchmark: Benchmark, root: Path, sequence: str) -> Path:
    folder = benchmark.spec.split(benchmark.split).folder
    if benchmark.spec.layout == "mots":
        return root / folder / sequence / "img1"
    return root / "images" / folder / sequence


def pack_step_submission(
    pred_dir: str | Path,
    out: str | Path,
    benchmark: str = "motchallenge_step",
    root: str | Path | None = None,
    sequences: Sequence[str] | None = None,
    workers: int = 4,
) -> SubmissionReport:
    """Check STEP PNG predictions ``<seq>/<frame>.png`` complete and pack them in the server's layout.

    Args:
        pred_dir: the folder of sequence folders (``hvps track --out``'s ``step/``).
        out: the zip to write.
        benchmark: a key of :data:`STEP_BENCHMARKS`.
        root: the dataset root, to read the test frames' names from its images.
        sequences: the sequences to pack (default: the benchmark's test sequences).
        workers: threads decoding the PNGs (every file is decoded once, as a check).

    Raises:
        HVPSError: naming the first missing sequence or frame, an extra frame, a file that is
            not an 8-bit RGB PNG, a frame of another size or a class the dataset lacks.
    """
    bench = _benchmark(STEP_BENCHMARKS, benchmark, "step")
    pred_dir = _pred_folder(pred_dir)
    spec = bench.spec
    expected = expected_frames(bench, root, sequences)
    files: list[tuple[str, Path]] = []
    for sequence, frames in expected.items():
        folder = pred_dir / sequence
        if not folder.is_dir():
            raise file_error(folder, f"missing: no predictions of test sequence {sequence}")
        present = {p.stem: p for p in folder.glob("*.png")}
        missing = [f for f in frames if f not in present]
        if missing:
            raise file_error(folder / f"{missing[0]}.png",
                             f"missing: frame {missing[0]} of test sequence {sequence} "
                             f"({len(missing)} of its {len(frames)} frames missing)")  # fmt: skip
        extra = sorted(set(present) - set(frames))
        if extra:
            raise file_error(present[extra[0]], f"not a frame of test sequence {sequence}")
        files += [(f"{sequence}/{frame}.png", present[frame]) for frame in frames]
    valid = np.zeros(256, bool)
    valid[: spec.num_classes] = True
    valid[spec.ignore_label] = True
    sizes: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (name, path), shape in zip(files, pool.map(lambda f: _check_step_png(f[1], valid), files),
                                       strict=True):  # fmt: skip
            sequence = name.split("/", 1)[0]
            first = sizes.setdefault(sequence, shape)
            if shape != first:
                raise file_error(path, f"size {shape[1]}x{shape[0]} differs from the sequence's "
                                       f"{first[1]}x{first[0]}")  # fmt: skip
    for sequence, shape in sizes.items():
        want = _image_size(bench, root, sequence)
        if want is not None and shape != want:
            raise HVPSError(f"{pred_dir / sequence}: frames of {shape[1]}x{shape[0]}, the test images of "
                            f"{sequence} are {want[1]}x{want[0]}")  # fmt: skip
    _write_zip(out, [(name, path, zipfile.ZIP_STORED) for name, path in files])  # PNGs are compressed
    report = SubmissionReport(Path(out), bench.name, {s: len(f) for s, f in expected.items()})
    report.left_out = _left_out(pred_dir.iterdir(), expected, directories=True)
    return report


def _image_size(bench: Benchmark, root: str | Path | None, sequence: str) -> tuple[int, int] | None:
    """The (height, width) of a test sequence's images: its first image under ``root``, else official.

    Only MOTChallenge-STEP's test images share one official size (1920x1080); KITTI's differ by
    a few pixels between sequences.
    """
    if root is not None:
        with Image.open(_images(_image_folder(bench, Path(root), sequence))[0]) as image:
            return image.height, image.width
    return bench.spec.image_size if bench.name == "motchallenge_step" else None


def _check_step_png(path: Path, valid: np.ndarray) -> tuple[int, int]:
    panoptic = read_step_panoptic(path)
    classes = np.unique(panoptic >> 16)
    wrong = [int(c) for c in classes if c > 255 or not valid[c]]
    if wrong:
        raise file_error(path, f"semantic class {wrong[0]} is neither a class of the dataset nor void (255)")
    return int(panoptic.shape[0]), int(panoptic.shape[1])


def pack_mots_submission(
    pred_dir: str | Path,
    out: str | Path,
    benchmark: str = "mots20",
    root: str | Path | None = None,
    sequences: Sequence[str] | None = None,
) -> SubmissionReport:
    """Check MOTS txt predictions ``<seq>.txt`` and pack them in the server's layout.

    Args:
        pred_dir: the folder of ``<seq>.txt`` files (``hvps track --out``'s ``mots/``).
        out: the zip to write.
        benchmark: a key of :data:`MOTS_BENCHMARKS`.
        root: the dataset root, to read the test sequences' lengths from their images.
        sequences: the sequences to pack (default: the benchmark's test sequences).

    Raises:
        HVPSError: naming a missing sequence file, a malformed line, a frame outside the
            sequence, a repeated id in a frame, masks of another size or overlapping masks.
    """
    bench = _benchmark(MOTS_BENCHMARKS, benchmark, "mots")
    pred_dir = _pred_folder(pred_dir)
    expected = expected_frames(bench, root, sequences)
    report = SubmissionReport(Path(out), bench.name)
    files = []
    for sequence, frames in expected.items():
        path = pred_dir / f"{sequence}.txt"
        if not path.is_file():
            raise file_error(path, f"missing: no predictions of test sequence {sequence}")
        objects = read_mots_txt(path)
        numbers = {int(f) for f in frames}
        _check_mots_sequence(objects, numbers, path)
        report.frames[sequence] = len(frames)
        report.objects[sequence] = len(objects)
        files.append((f"{sequence}.txt", path, zipfile.ZIP_DEFLATED))
    _write_zip(out, files)
    report.left_out = _left_out(pred_dir.glob("*.txt"), expected, directories=False)
    return report


def _check_mots_sequence(objects: Iterable[MOTSObject], frames: set[int], path: Path) -> None:
    """Frames in the sequence, one size, unique ids and no overlap in each frame (all classes)."""
    by_frame: dict[int, list[MOTSObject]] = {}
    for obj in objects:
        if obj.frame not in frames:
            raise file_error(path, f"frame {obj.frame} is not a frame of the sequence "
                                   f"({min(frames)}..{max(frames)})")  # fmt: skip
        by_frame.setdefault(obj.frame, []).append(obj)
    sizes = {tuple(int(v) for v in o.rle["size"]) for group in by_frame.values() for o in group}
    if len(sizes) > 1:
        raise file_error(path, f"masks of different sizes {sorted(sizes)}")
    for frame, group in sorted(by_frame.items()):
        ids = [o.obj_id for o in group]
        if len(set(ids)) != len(ids):
            repeated = next(i for i in ids if ids.count(i) > 1)
            raise file_error(path, f"frame {frame}: id {repeated} appears more than once")
        rles = [o.rle for o in group]
        if len(rles) > 1 and int(mask_areas([merge_masks(rles)])[0]) != int(np.sum(mask_areas(rles))):
            ignore = " (class-10 lines included: the server checks every line)" if any(
                o.class_id == IGNORE_CLASS for o in group) else ""  # fmt: skip
            raise file_error(path, f"frame {frame}: masks overlap{ignore}")


def _benchmark(known: dict[str, Benchmark], name: str, kind: str) -> Benchmark:
    if name not in known:
        raise HVPSError(f"--benchmark {name}: hvps submit {kind} knows {', '.join(known)}")
    return known[name]


def _pred_folder(pred_dir: str | Path) -> Path:
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise file_error(pred_dir, "--pred is not a folder")
    return pred_dir


def _left_out(found: Iterable[Path], expected: dict[str, list[str]], directories: bool) -> list[str]:
    names = [p.name if directories else p.stem for p in found if p.is_dir() == directories]
    return sorted(n for n in names if n not in expected and not n.startswith("."))


def _write_zip(out: str | Path, members: Sequence[tuple[str, Path, int]]) -> None:
    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise HVPSError(f"--out {out}: a submission is a .zip file")
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, path, compression in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
