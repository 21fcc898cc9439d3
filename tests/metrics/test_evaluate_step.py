"""``hvps evaluate step`` internals: packed PNG decoding, the decoder pool, --workers, --output, --quiet."""

from __future__ import annotations

import ctypes
import io
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from hvps_lightning.cli import main
from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation import step_folders
from hvps_lightning.evaluation.step_folders import FramePair, decoded_in_order, evaluate_step_folders
from hvps_lightning.formats import step_png
from hvps_lightning.formats.step_png import read_step_panoptic, read_step_png, write_step_png


@pytest.mark.parametrize("decoder", ["cv2", "pil"])
def test_packed_decoding_equals_the_channels(tmp_path: Path, decoder: str) -> None:
    rng = np.random.default_rng(0)
    semantic = rng.integers(0, 256, (23, 31))
    instance = rng.integers(0, 65536, (23, 31))
    instance[:5] = 65535
    path = tmp_path / "f.png"
    write_step_png(path, semantic, instance)
    packed = read_step_panoptic(path, decoder)
    assert packed.dtype == np.uint32 and packed.shape == (23, 31) and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed, semantic * 65536 + instance)
    back_semantic, back_instance = read_step_png(path)
    np.testing.assert_array_equal(packed, back_semantic.astype(np.int64) * 65536 + back_instance)


def _png_variants(tmp_path: Path) -> list[tuple[Path, str]]:
    good = tmp_path / "good.png"
    write_step_png(good, np.zeros((40, 50), int), np.arange(2000).reshape(40, 50) * 7)
    data = good.read_bytes()
    variants = []
    for name, content in [
        ("truncated", data[: len(data) // 2]),
        ("no_end", data[:-12]),
        ("header_only", data[:40]),
        ("garbage", b"not a png at all"),
        ("fake_signature", b"\x89PNG\r\n\x1a\n not really"),
    ]:
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        variants.append(
            (path, "truncated" if name in ("truncated", "no_end", "header_only") else "not a readable")
        )
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    variants.append((tmp_path / "corrupt.png", "fails its CRC"))
    images = [
        ("grey", Image.fromarray(np.zeros((4, 4), np.uint8)), "8-bit grey"),
        ("rgba", Image.fromarray(np.zeros((4, 4, 4), np.uint8)), "8-bit RGBA"),
        ("palette", Image.fromarray(np.zeros((4, 4, 3), np.uint8)).convert("P"), "8-bit palette"),
    ]
    for name, image, words in images:
        image.save(tmp_path / f"{name}.png")
        variants.append((tmp_path / f"{name}.png", words))
    for name, array, words in [
        ("grey16", np.zeros((4, 4), np.uint16), "16-bit grey"),
        ("rgb16", np.zeros((4, 4, 3), np.uint16), "16-bit RGB"),
    ]:
        cv2.imwrite(str(tmp_path / f"{name}.png"), array)
        variants.append((tmp_path / f"{name}.png", words))
    variants.append((tmp_path / "missing.png", "not found"))
    return variants


@pytest.mark.parametrize("decoder", ["cv2", "pil"])
def test_packed_decoding_errors_name_the_file_in_one_line(tmp_path: Path, decoder: str) -> None:
    for path, words in _png_variants(tmp_path):
        with pytest.raises(HVPSError) as info:
            read_step_panoptic(path, decoder)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and words in message and "\n" not in message, message


def test_a_file_opencv_refuses_gets_pil_s_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid chunks (CRCs right) around a broken zlib stream: OpenCV fails, PIL names the problem."""
    raw = b"\x00" + bytes(3 * 4)  # one row, filter 0, of a 4 x 1 RGB image
    broken_idat = zlib.compress(raw * 2)[:-6]  # the stream ends early

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = (4).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path = tmp_path / "broken_stream.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", broken_idat) + chunk(b"IEND", b"")
    )
    used = []
    original = step_png._decode_pil
    monkeypatch.setattr(step_png, "_decode_pil", lambda *a: used.append(a) or original(*a))
    with pytest.raises(HVPSError, match="unreadable or truncated image"):
        read_step_panoptic(path)
    assert used, "PIL was not asked"


def test_decoded_in_order_keeps_the_order_and_bounds_the_look_ahead() -> None:
    pairs = [FramePair("s", Path(f"{i}.png"), Path(f"{i}.png")) for i in range(40)]
    in_flight, peak, lock = 0, 0, threading.Lock()
    rng = np.random.default_rng(0)
    delays = rng.random(40) * 0.004

    def decode(pair: FramePair) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(float(delays[int(pair.gt.stem)]))
        return int(pair.gt.stem)

    seen = []
    for pair, value in decoded_in_order(pairs, 3, decode):
        assert int(pair.gt.stem) == value
        seen.append(value)
        with lock:
            in_flight -= 1
    assert seen == list(range(40))
    assert peak <= 3 * step_folders.FRAMES_AHEAD_PER_WORKER


@pytest.mark.parametrize("workers", [1, 3])
def test_a_worker_error_stops_at_its_frame(workers: int) -> None:
    pairs = [FramePair("s", Path(f"{i}.png"), Path(f"{i}.png")) for i in range(30)]
    started = []

    def decode(pair: FramePair) -> int:
        started.append(pair)
        if pair.gt.stem == "5":
            raise HVPSError(f"{pair.gt}: broken")
        return int(pair.gt.stem)

    seen = []
    with pytest.raises(HVPSError, match=r"5\.png: broken"):
        for _, value in decoded_in_order(pairs, workers, decode):
            seen.append(value)
    assert seen == [0, 1, 2, 3, 4]
    assert len(started) <= 6 + workers * step_folders.FRAMES_AHEAD_PER_WORKER  # the rest never started


def test_workers_give_identical_results(step_cli, tmp_path: Path) -> None:
    step_cli.write_step_folders(tmp_path)
    results = [
        evaluate_step_folders(tmp_path / "gt", tmp_path / "pred", 7, [4], workers=workers)
        for workers in (1, 2, 4)
    ]
    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1  # NaN-aware equality
    done = []
    evaluate_step_folders(
        tmp_path / "gt", tmp_path / "pred", 7, [4], workers=2, progress=lambda d, t: done.append((d, t))
    )
    assert done == [(i, 6) for i in range(1, 7)]


def test_cli_workers_and_quiet(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_cli.write_step_folders(tmp_path)
    outputs = []
    for extra in (["--workers", "1"], ["--workers", "3", "--quiet"], []):
        code, output = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", *extra)
        assert code == 0
        outputs.append(json.loads(output.read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    code, _ = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--workers", "0")
    step_cli.assert_user_error(capsys, code, "--workers must be positive")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(step_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step_cli.write_step_folders(tmp_path)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, _ = step_cli.evaluate_step(tmp_path)
    assert code == 0
    shown = terminal.getvalue()
    assert "6/6" in shown and "frame/s" in shown
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, _ = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--quiet")
    assert code == 0 and terminal.getvalue() == ""


def test_progress_bar_is_erased_before_an_error(
    step_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_cli.write_step_folders(tmp_path)
    broken = tmp_path / "gt" / "0009" / "000001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, _ = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--workers", "1")
    assert code == 2
    lines = [line for line in terminal.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("hvps evaluate: error:") and str(broken) in lines[-1]
    assert "/6 [" in terminal.getvalue()  # the bar had been drawn


@pytest.mark.parametrize("command", ["step", "mots"])
def test_output_that_cannot_be_written_is_refused_before_any_frame(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    step_cli.write_step_folders(tmp_path)
    bad_frame = tmp_path / "gt" / "0002" / "000000.png"
    bad_frame.write_bytes(b"broken")  # were a frame evaluated, the error would name it
    (tmp_path / "a_file").write_text("x")
    folder = tmp_path / "out_folder"
    folder.mkdir()
    cases = [
        (folder, "is a folder"),
        (tmp_path / "a_file" / "stq.json", "is not a folder"),
        (tmp_path / "a_file" / "deeper" / "stq.json", "is not a folder"),
    ]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/self/hvps/stq.json"), "cannot be written"))
    if os.geteuid() != 0:  # root writes anywhere: the mode bits say nothing to it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((locked / "stq.json", "cannot be written"))
    for output, words in cases:
        args = ["evaluate", command, "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
        if command == "step":
            args += ["--dataset", "motchallenge_step"]
        code = main([*args, "--output", str(output)])
        step_cli.assert_user_error(capsys, code, str(output), words)
    assert list(folder.iterdir()) == []


def test_nested_output_folders_are_created(step_cli, tmp_path: Path) -> None:
    step_cli.write_step_folders(tmp_path)
    output = tmp_path / "new" / "deeper" / "stq.json"
    args = ["evaluate", "step", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    assert main([*args, "--dataset", "motchallenge_step", "--output", str(output)]) == 0
    assert json.loads(output.read_text())["num_frames"] == 6


def test_evaluate_step_loads_no_torch(step_cli, tmp_path: Path) -> None:
    """Start-up: neither --help nor an evaluation imports torch, torchmetrics, torchvision or Lightning."""
    step_cli.write_step_folders(tmp_path)
    heavy = ("torch", "torchmetrics", "torchvision", "lightning", "pytorch_lightning")
    code = (
        "import sys\n"
        "from hvps_lightning.cli.main import main\n"
        "args = sys.argv[1:]\n"
        "code = main(args)\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    run = [sys.executable, "-c", code, "evaluate"]
    subprocess.run([*run, "--help"], check=True, capture_output=True)
    output = tmp_path / "stq.json"
    subprocess.run(
        [*run, "step", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--dataset",
         "motchallenge_step", "--output", str(output)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert json.loads(output.read_text())["num_frames"] == 6


def test_freed_frames_are_reused_not_mapped_afresh(tmp_path: Path) -> None:
    """With keep_frames_in_the_heap, decoding frame after frame stops page-faulting."""
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018 - is the C library glibc?
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pytest.skip("the C library is not glibc")
    path = tmp_path / "frame.png"
    write_step_png(path, np.ones((512, 1024), int), np.arange(512 * 1024).reshape(512, 1024) % 60000)
    code = (
        "import resource, sys\n"
        "from hvps_lightning.evaluation.step_folders import keep_frames_in_the_heap\n"
        "from hvps_lightning.formats.step_png import read_step_panoptic\n"
        "if sys.argv[2] == 'tuned':\n"
        "    assert keep_frames_in_the_heap()\n"
        "for _ in range(3):\n"
        "    read_step_panoptic(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    read_step_panoptic(sys.argv[1])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {}
    for mode in ("default", "tuned"):
        run = subprocess.run(
            [sys.executable, "-c", code, str(path), mode], check=True, capture_output=True, text=True
        )
        faults[mode] = int(run.stdout)
    assert faults["tuned"] * 4 < faults["default"], faults


def test_left_out_frames_gaps_and_a_wrong_dataset_are_warned(tmp_path, capsys) -> None:
    from hvps_lightning.cli import main
    from hvps_lightning.formats.step_png import write_step_png

    semantic = np.zeros((8, 8), np.int32)
    semantic[2:6, 2:6] = 4  # MOTChallenge-STEP person
    instance = np.where(semantic == 4, 3, 0)
    for root in ("gt", "pred"):
        for frame in ("000001", "000002", "000004"):  # 000003 is missing from both
            write_step_png(tmp_path / root / "0002" / f"{frame}.png", semantic, instance)
    write_step_png(tmp_path / "pred" / "0002" / "000009.png", semantic, instance)  # no ground truth
    write_step_png(tmp_path / "pred" / "0005" / "000001.png", semantic, instance)  # no ground truth
    args = ["evaluate", "step", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--quiet"]
    assert main([*args, "--dataset", "motchallenge_step", "--output", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any("frame(s) 000009 have no ground truth" in line for line in err), err
    assert any("sequence(s) 0005 have no ground truth" in line for line in err), err
    assert any("ground-truth frame(s) 000003 are missing" in line for line in err), err
    assert not any("is --dataset right" in line for line in err), err
    # KITTI-STEP's class 4 is a wall: persons with ids on it mean the wrong dataset
    assert main([*args, "--dataset", "kitti_step", "--output", str(tmp_path / "b.json")]) == 0
    err = capsys.readouterr().err
    assert "instance ids on class(es) fence" in err or "instance ids on class(es) wall" in err, err
    assert "is --dataset right?" in err
