"""The per-file loaders: images of every bit depth, 16-bit label maps, reduced JPEG decoding."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hvps_lightning.cli import main
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.loaders import decode_image, read_image, read_step_labels, reduction_factor
from hvps_lightning.data.transforms import ClipTransform, normalize_frames
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import read_png, read_step_png, write_step_png
from hvps_lightning.structures.specs import get_spec

MOT = get_spec("motchallenge_step")
RNG = np.random.default_rng(0)
RGB16 = RNG.integers(0, 65536, (6, 9, 3), dtype=np.uint16)
GREY16 = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


# ---------------------------------------------------------------------------- bit depths
def write_16bit_rgb(path: Path) -> Path:
    cv2.imwrite(str(path), RGB16[:, :, ::-1])
    return path


def write_16bit_grey(path: Path) -> Path:
    cv2.imwrite(str(path), GREY16)
    return path


def write_16bit_rgba(path: Path) -> Path:
    alpha = np.full((6, 9, 1), 65535, np.uint16)
    cv2.imwrite(str(path), np.concatenate([RGB16[:, :, ::-1], alpha], axis=2))
    return path


def write_1bit(path: Path) -> Path:
    Image.fromarray(GREY16 > 30000).save(path)
    return path


def write_palette(path: Path) -> Path:
    image = Image.fromarray((GREY16 >> 14).astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    image.save(path)
    return path


def write_16bit_with_trailing_bytes(path: Path) -> Path:
    """A 16-bit grey PNG with bytes after its end: not OpenCV's path, PIL's."""
    write_16bit_grey(path)
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    return path


EXPECTED = {
    "16-bit RGB": (write_16bit_rgb, (RGB16 >> 8).astype(np.uint8)),
    "16-bit grey": (write_16bit_grey, grey_to_rgb((GREY16 >> 8).astype(np.uint8))),
    "16-bit RGBA": (write_16bit_rgba, (RGB16 >> 8).astype(np.uint8)),
    "1-bit": (write_1bit, grey_to_rgb(np.where(GREY16 > 30000, 255, 0).astype(np.uint8))),
    "palette": (
        write_palette,
        np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[GREY16 >> 14],
    ),
    "16-bit grey, PIL's path": (write_16bit_with_trailing_bytes, grey_to_rgb((GREY16 >> 8).astype(np.uint8))),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_images_of_any_bit_depth_load_scaled_to_8_bits(kind: str, tmp_path: Path) -> None:
    writer, expected = EXPECTED[kind]
    image = read_image(writer(tmp_path / "frame.png"))
    assert image.dtype == np.uint8 and image.shape == (6, 9, 3)
    assert np.array_equal(image, expected)


def test_an_image_with_32_bit_samples_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    Image.fromarray(RNG.random((6, 9), dtype=np.float32), mode="F").save(path.with_suffix(".tif"))
    path.with_suffix(".tif").rename(path)  # a float TIFF under a .png name
    with pytest.raises(HVPSError, match=r"frame\.png: image with 32-bit samples \(PIL mode F\)"):
        read_image(path)


def test_a_16_bit_image_in_a_dataset_loads_instead_of_turning_white(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mot"
    shutil.copytree(synth_mot_step_root, root)
    frame = root / "images/train/0002/000003.png"
    eight = read_image(frame)
    cv2.imwrite(str(frame), (eight[:, :, ::-1].astype(np.uint16) * 257))  # the same picture in 16 bits
    assert np.array_equal(read_image(frame), eight)
    assert main(["data", "check", "--dataset", "motchallenge_step", "--root", str(root)]) == 0
    capsys.readouterr()


# ---------------------------------------------------------------------------- 16-bit label maps
def test_16_bit_maps_read_as_their_values_or_are_refused_where_the_format_is_8_bit(tmp_path: Path) -> None:
    grey = write_16bit_grey(tmp_path / "cityscapes_style.png")
    assert read_png(grey).dtype == np.uint16 and np.array_equal(read_png(grey), GREY16)  # the values
    # STEP and COCO panoptic maps are 8-bit RGB: anything else is refused, not narrowed
    rgb = write_16bit_rgb(tmp_path / "step16.png")
    expected = r"step16\.png: expected an RGB image with 8 bits per channel, found 16-bit RGB"
    with pytest.raises(HVPSError, match=expected):
        read_step_png(rgb)
    with pytest.raises(HVPSError, match=r"found 16-bit grey"):
        read_step_png(grey)


def test_a_16_bit_step_map_fails_the_check_with_one_line(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mot"
    shutil.copytree(synth_mot_step_root, root)
    label = root / "panoptic_maps/train/0002/000004.png"
    rgb = read_png(label, mode="RGB")
    cv2.imwrite(str(label), rgb[:, :, ::-1].astype(np.uint16) * 257)
    assert main(["data", "check", "--dataset", "motchallenge_step", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith(f"{label}: ")]
    assert "expected an RGB image with 8 bits per channel, found 16-bit RGB" in line
    assert "Traceback" not in err


def test_instance_ids_beyond_the_label_divisor_are_refused(synth_mot_step_root: Path, tmp_path: Path) -> None:
    label = synth_mot_step_root / "panoptic_maps/train/0002/000004.png"
    semantic, instance = read_step_png(label)
    semantic[0, 0], instance[0, 0] = 4, 1000  # MOTChallenge-STEP's divisor is 1000
    bad = tmp_path / "bad.png"
    write_step_png(bad, semantic, instance)
    with pytest.raises(HVPSError, match=r"bad\.png: instance id 1000 does not fit the label divisor 1000"):
        read_step_labels(bad, MOT, semantic.shape)
    instance[0, 0] = 999
    write_step_png(bad, semantic, instance)
    assert read_step_labels(bad, MOT, semantic.shape)[1][0, 0] == 999


def test_labels_resized_before_unpacking_equal_unpacked_then_resized(synth_mot_step_root: Path) -> None:
    label = synth_mot_step_root / "panoptic_maps/train/0002/000004.png"
    semantic, instance = read_step_png(label)
    for size in ((48, 80), (50, 70), (200, 333)):
        got = read_step_labels(label, MOT, semantic.shape, size=size)
        for full, small in zip((semantic, instance), got, strict=True):
            assert np.array_equal(cv2.resize(full, size[::-1], interpolation=cv2.INTER_NEAREST), small)


# ---------------------------------------------------------------------------- reduced decoding
def test_reduction_factor_covers_the_target_size() -> None:
    assert reduction_factor((1080, 1920), (544, 960)) == 2  # 540 rows serve 544 (within 1 %)
    assert reduction_factor((1080, 1920), (270, 480)) == 4
    assert reduction_factor((1080, 1920), (100, 100)) == 8
    assert reduction_factor((1080, 1920), (560, 960)) == 1
    assert reduction_factor((375, 1242), (384, 1248)) == 1  # upscaling: never reduced


def test_reduced_jpeg_decode(tmp_path: Path, synth_mot_step_root: Path) -> None:
    image = read_image(synth_mot_step_root / "images/train/0002/000004.png")
    jpeg = tmp_path / "frame.jpg"
    Image.fromarray(image).save(jpeg, quality=95)
    full = decode_image(jpeg)
    half = decode_image(jpeg, min_size=(48, 80))
    assert full.size == half.size == (96, 160) and full.pixels.shape == (96, 160, 3)
    assert half.pixels.shape == (48, 80, 3)
    resized = cv2.resize(full.pixels, (80, 48), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(half.pixels.astype(int) - resized).mean() < 3  # the same picture, scaled in the DCT
    png = tmp_path / "frame.png"
    Image.fromarray(image).save(png)
    assert decode_image(png, min_size=(48, 80)).pixels.shape == (96, 160, 3)  # PNG: whole
    jpeg.write_bytes(jpeg.read_bytes()[:-200])
    with pytest.raises(HVPSError, match=r"frame\.jpg: unreadable or truncated image"):
        decode_image(jpeg, min_size=(48, 80))


def test_reduced_decode_in_a_dataset_changes_pixels_only(synth_mots20_root: Path) -> None:
    def dataset(reduced: bool) -> ClipDataset:
        transform = ClipTransform((48, 80), train=False)
        return ClipDataset("mots", synth_mots20_root, "train", clip_length=2, transform=transform,
                           reduced_decode=reduced)  # fmt: skip

    plain, reduced = dataset(False), dataset(True)
    for index in (0, 5, 13):
        (a,), (b,) = plain[index], reduced[index]
        assert a["meta"] == b["meta"] and a["meta"]["orig_size"] == (96, 160)
        assert a["frames"].shape == b["frames"].shape == (2, 48, 80, 3)
        assert 0 < (normalize_frames(a["frames"]) - normalize_frames(b["frames"])).abs().mean() < 0.1
        for key, value in a["target"].items():
            assert np.array_equal(value.numpy(), b["target"][key].numpy()), key
