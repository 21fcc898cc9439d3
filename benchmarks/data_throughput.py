"""Training-loader throughput per worker against decoding the same files, for the mot_step configs.

Takes the ``data`` section of the shipped configs ``stages/mot_step/{mots,semantic}`` (the MOTS
config: clips of 3 frames, 2 clips per item, 544x960, augmentation on; the semantic config:
single frames, semantic targets only; both decode JPEG at half size and leave the
normalisation to the device) over a generated MOTChallenge-STEP root at 1080p
(``hvps synth``; or ``--root`` of an existing one). Generated frames are PNG; they are
re-encoded as JPEG (quality 95) like the real MOTChallenge frames, unless ``--images png``.

One process, one thread, as one DataLoader worker runs: each batch is built by the dataset
and the collate function, and right after it the very files that batch read (every image and
panoptic map, recorded as the loader opened them) are decoded at full size with OpenCV (the
anchor: the fastest decoder here) and with PIL. The three alternate batch by batch, so other
load on the machine slows them alike; ``decode_ratio`` = loader clips/s / OpenCV decode-only
clips/s of the same files (target >= 0.6). ``host_normalised_decode_ratio``: the same with the
normalisation done in the worker (``normalize_on_device: false``, the DataModule's default).

With ``--cache`` it also writes a pre-resized copy (``hvps data cache`` at the config's
image_size) and times the same batches read from it.

Usage::

    python benchmarks/data_throughput.py [--root DIR] [--frames 10] [--height 1080 --width 1920]
        [--images jpeg|png] [--repeats 3] [--cache]

It prints a table, then one JSON line: ``{"mots": {"clips_per_s", "decode_ratio", ...},
"semantic": {...}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from hvps_lightning.cli.config import composed_config
from hvps_lightning.data import datasets, loaders
from hvps_lightning.data.cache import write_resized_copy
from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.data.synthetic.generate import generate_dataset


def data_options(model: str) -> dict[str, Any]:
    """The HVPSDataModule arguments of a mot_step stage config."""
    return dict(composed_config(f"stages/mot_step/{model}")["data"]["init_args"])


def make_root(out: Path, frames: int, height: int, width: int, images: str) -> Path:
    root = out / "motchallenge_step"
    generate_dataset("motchallenge_step", root, sequences=2, frames=frames, height=height, width=width,
                     seed=0, progress=False)  # fmt: skip
    if images == "jpeg":
        for png in sorted((root / "images").rglob("*.png")):
            Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=95)
            png.unlink()
    return root


@contextmanager
def recording_files() -> Iterator[list[tuple[str, Path]]]:
    """Record every image and label file the loaders open, as ("image" | "map", path)."""
    opened: list[tuple[str, Path]] = []
    originals = (loaders.decode_image, datasets.decode_image, loaders.read_png)

    def decode_image(path: Any, min_size: Any = None) -> Any:
        opened.append(("image", Path(path)))
        return originals[0](path, min_size)

    def read_png(path: Any, mode: Any = None) -> Any:
        opened.append(("map", Path(path)))
        return originals[2](path, mode)

    loaders.decode_image = datasets.decode_image = decode_image  # type: ignore[assignment]
    loaders.read_png = read_png  # type: ignore[assignment]
    try:
        yield opened
    finally:
        loaders.decode_image, datasets.decode_image, loaders.read_png = originals  # type: ignore[assignment]


def decode_cv2(files: list[tuple[str, Path]]) -> None:
    for kind, path in files:
        flags = cv2.IMREAD_COLOR if kind == "image" else cv2.IMREAD_UNCHANGED
        if cv2.imread(str(path), flags) is None:
            raise RuntimeError(f"{path}: OpenCV could not decode it")


def decode_pil(files: list[tuple[str, Path]]) -> None:
    for _, path in files:
        with Image.open(path) as image:
            image.load()
            np.asarray(image)


def measure(model: str, root: Path, cache_root: Path | None, repeats: int) -> dict[str, Any]:
    """Time the loader (and the cache's), OpenCV decode and PIL decode of the same batches."""
    options = data_options(model)
    options.update(root=str(root), num_workers=0)
    modules = {"loader": HVPSDataModule(**options)}
    if options.get("normalize_on_device"):  # the same batches normalised in the worker, for comparison
        modules["host"] = HVPSDataModule(**{**options, "normalize_on_device": False})
    if cache_root is not None:
        modules["cache"] = HVPSDataModule(**{**options, "root": str(cache_root)})
    train = {name: dm.dataset("train") for name, dm in modules.items()}
    batch_size = int(options["batch_size"])
    count = len(train["loader"]) // batch_size * batch_size
    if count == 0:
        raise SystemExit(f"{model}: the training split has {len(train['loader'])} items, fewer than a batch")
    times = dict.fromkeys([*modules, "decode_cv2", "decode_pil"], 0.0)
    clips = files_read = 0

    def timed(name: str, work: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = work(*args)
        times[name] += time.perf_counter() - start
        return result

    def load(name: str, indices: range, seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)  # the same clips from the root and from the cache
        return modules[name].collate([train[name][i] for i in indices])

    for repeat in range(repeats):
        for first in range(0, count, batch_size):
            indices, seed = range(first, first + batch_size), 1000 * repeat + first
            with recording_files() as opened:
                batch = timed("loader", load, "loader", indices, seed)
            files = list(opened)
            for name in ("host", "cache"):
                if name in modules:
                    timed(name, load, name, indices, seed)
            timed("decode_cv2", decode_cv2, files)
            timed("decode_pil", decode_pil, files)
            clips += int(batch["frames"].shape[0])
            files_read += len(files)
    result = {
        "clips_per_s": round(clips / times["loader"], 2),
        "decode_ratio": round(times["decode_cv2"] / times["loader"], 3),
        "pil_decode_ratio": round(times["decode_pil"] / times["loader"], 3),
        "decode_clips_per_s": round(clips / times["decode_cv2"], 2),
        "files_per_clip": round(files_read / clips, 2),
        "clips": clips,
    }
    result["normalize_on_device"] = bool(options.get("normalize_on_device"))
    if "host" in modules:
        result["host_normalised_decode_ratio"] = round(times["decode_cv2"] / times["host"], 3)
    if "cache" in modules:
        result["cache_clips_per_s"] = round(clips / times["cache"], 2)
        result["cache_speedup"] = round(times["loader"] / times["cache"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="an existing MOTChallenge-STEP root")
    parser.add_argument("--frames", type=int, default=10, help="frames per generated sequence")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--images", choices=("jpeg", "png"), default="jpeg", help="generated frames' format")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the training items")
    parser.add_argument("--cache", action="store_true", help="also time a pre-resized copy (hvps data cache)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or make_root(Path(tmp), args.frames, args.height, args.width, args.images)
        for model in ("mots", "semantic"):
            cache_root = None
            if args.cache:
                cache_root = Path(tmp) / f"cache_{model}"
                size = data_options(model)["image_size"]
                write_resized_copy("motchallenge_step", root, cache_root, size, workers=1)
            results[model] = measure(model, root, cache_root, args.repeats)
    header = ("config", "clips/s", "decode-only clips/s", "ratio", "vs PIL", "files/clip")
    print(f"{header[0]:<10} {header[1]:>8} {header[2]:>20} {header[3]:>6} {header[4]:>7} {header[5]:>10}")
    for model, r in results.items():
        print(f"{model:<10} {r['clips_per_s']:>8} {r['decode_clips_per_s']:>20} {r['decode_ratio']:>6} "
              f"{r['pil_decode_ratio']:>7} {r['files_per_clip']:>10}")  # fmt: skip
    results["images"] = "given root" if args.root else args.images
    results["size"] = None if args.root else [args.height, args.width]
    print("(one process, one thread; decode-only = OpenCV full-size decode of the files each batch read)")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
