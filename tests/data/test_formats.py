"""Round trips and error messages of the STEP PNG, MOTS txt and COCO panoptic formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import (
    MOTSObject,
    PanopticImage,
    category_to_class,
    check_no_overlap,
    decode_step,
    encode_step,
    id_to_rgb,
    read_coco_panoptic,
    read_mots_txt,
    read_step_png,
    rgb_to_id,
    segments_from_ids,
    to_semantic_instance,
    write_coco_panoptic,
    write_mots_txt,
    write_step_png,
)
from hvps_lightning.structures.masks import decode_mask, encode_mask

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))


# ---------------------------------------------------------------- STEP PNG
@SETTINGS
@given(data=st.data(), shape=shapes)
def test_step_png_round_trip(tmp_path: Path, data: st.DataObject, shape: tuple[int, int]) -> None:
    semantic = data.draw(arrays(np.int32, shape, elements=st.integers(0, 255)))
    instance = data.draw(arrays(np.int32, shape, elements=st.integers(0, 65535)))
    path = tmp_path / "seq" / "000000.png"
    write_step_png(path, semantic, instance)
    sem_back, inst_back = read_step_png(path)
    np.testing.assert_array_equal(sem_back, semantic)
    np.testing.assert_array_equal(inst_back, instance)
    assert sem_back.dtype == np.int32 and inst_back.dtype == np.int32
    assert [p.name for p in path.parent.iterdir()] == ["000000.png"]  # no temporary left behind


def test_step_encoding_channels() -> None:
    rgb = encode_step(np.array([[4, 255]]), np.array([[513, 0]]))
    assert rgb.tolist() == [[[4, 2, 1], [255, 0, 0]]]
    semantic, instance = decode_step(rgb)
    assert semantic.tolist() == [[4, 255]] and instance.tolist() == [[513, 0]]


@pytest.mark.parametrize(
    ("semantic", "instance"), [([[256]], [[0]]), ([[-1]], [[0]]), ([[1]], [[65536]]), ([[1, 2]], [[1]])]
)
def test_step_encoding_rejects_out_of_range(semantic: list, instance: list) -> None:
    with pytest.raises(ValueError):
        encode_step(np.array(semantic), np.array(instance))


def test_step_png_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    write_step_png(good, np.zeros((8, 8), int), np.zeros((8, 8), int))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(grey)
    for path, words in [(truncated, "truncated"), (garbage, "not a readable image"), (grey, "RGB"),
                        (tmp_path / "missing.png", "not found")]:  # fmt: skip
        with pytest.raises(HVPSError) as info:
            read_step_png(path)
        assert str(path) in str(info.value) and words in str(info.value)


# ---------------------------------------------------------------- MOTS txt
@st.composite
def mots_sequences(draw: st.DrawFn) -> list[MOTSObject]:
    height, width = draw(shapes)
    objects = []
    for frame in draw(st.lists(st.integers(0, 50), min_size=0, max_size=4, unique=True)):
        # Non-overlapping masks: each pixel belongs to at most one of the ids of the frame.
        labels = draw(arrays(np.int64, (height, width), elements=st.integers(0, 3)))
        for k in np.unique(labels[labels > 0]).tolist():
            class_id = draw(st.sampled_from([1, 2]))
            objects.append(MOTSObject(frame, class_id * 1000 + k, class_id, encode_mask(labels == k)))
        if draw(st.booleans()):
            objects.append(MOTSObject(frame, 10000, 10, encode_mask(labels == 0)))
    return objects


@SETTINGS
@given(objects=mots_sequences())
def test_mots_txt_round_trip(tmp_path: Path, objects: list[MOTSObject]) -> None:
    path = tmp_path / "0001.txt"
    write_mots_txt(path, objects)
    back = read_mots_txt(path)
    expected = sorted(objects, key=lambda o: (o.frame, o.obj_id))
    assert back == expected
    for obj, orig in zip(back, expected, strict=True):
        np.testing.assert_array_equal(obj.mask(), decode_mask(orig.rle))
    check_no_overlap(back, path)


@SETTINGS
@given(mask=arrays(np.uint8, shapes, elements=st.integers(0, 1)))
def test_rle_round_trip(mask: np.ndarray) -> None:
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
    decoded = decode_mask(rle)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


def test_mots_txt_keeps_backslashes_and_backticks(tmp_path: Path) -> None:
    # A mask whose RLE contains both characters that must never be unescaped.
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((60, 80)) < 0.3
        rle = encode_mask(mask)
        if "\\" in rle["counts"] and "`" in rle["counts"]:
            break
    else:
        pytest.fail("no RLE with a backslash and a backtick found")
    path = tmp_path / "seq.txt"
    write_mots_txt(path, [MOTSObject(1, 2001, 2, rle)])
    assert rle["counts"] in path.read_text()
    (obj,) = read_mots_txt(path)
    np.testing.assert_array_equal(obj.mask(), mask)


def test_mots_txt_layout_and_order(tmp_path: Path) -> None:
    mask = np.zeros((3, 4), np.uint8)
    mask[0, 0] = 1
    rle = encode_mask(mask)
    path = tmp_path / "s.txt"
    write_mots_txt(
        path, [MOTSObject(2, 2001, 2, rle), MOTSObject(1, 2002, 2, rle), MOTSObject(1, 1001, 1, rle)]
    )
    lines = path.read_text().splitlines()
    assert [line.split(" ")[:5] for line in lines] == [
        ["1", "1001", "1", "3", "4"], ["1", "2002", "2", "3", "4"], ["2", "2001", "2", "3", "4"]]  # fmt: skip


def test_empty_mots_file_is_an_empty_sequence(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    assert read_mots_txt(path) == []
    check_no_overlap([], path)


@pytest.mark.parametrize(
    ("line", "number"),
    [("1 2001 2 4 5", 2), ("1 x 2 4 5 abc", 2), ("1 2001 2 0 5 abc", 2), ("1 2001 2 4 5 ab cd", 2)],
)
def test_malformed_mots_line_names_file_and_line(tmp_path: Path, line: str, number: int) -> None:
    good = f"0 2001 2 4 5 {encode_mask(np.ones((4, 5)))['counts']}"
    path = tmp_path / "bad.txt"
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(HVPSError, match=rf"bad\.txt: line {number}:"):
        read_mots_txt(path)


def _square(y: int, x: int, size: int = 3, shape: tuple[int, int] = (10, 10)) -> dict:
    mask = np.zeros(shape, np.uint8)
    mask[y : y + size, x : x + size] = 1
    return encode_mask(mask)


def test_check_no_overlap_finds_overlaps_and_repeated_ids() -> None:
    ok = [MOTSObject(3, 2001, 2, _square(0, 0)), MOTSObject(3, 2002, 2, _square(5, 5)),
          MOTSObject(3, 10000, 10, _square(0, 5)), MOTSObject(3, 10000, 10, _square(1, 6))]  # fmt: skip
    check_no_overlap(ok, "seq.txt")  # two ignore lines may overlap each other
    with pytest.raises(HVPSError, match=r"seq\.txt: frame 3: masks of id 2001 and id 2002 overlap"):
        check_no_overlap(
            [MOTSObject(3, 2001, 2, _square(0, 0)), MOTSObject(3, 2002, 2, _square(2, 2))], "seq.txt"
        )
    with pytest.raises(HVPSError, match=r"frame 4: masks of id 2001 and the ignore region overlap"):
        check_no_overlap(
            [MOTSObject(4, 2001, 2, _square(0, 0)), MOTSObject(4, 10000, 10, _square(2, 2))], "s"
        )
    with pytest.raises(HVPSError, match=r"s: frame 5: id 2001 appears more than once"):
        check_no_overlap([MOTSObject(5, 2001, 2, _square(0, 0)), MOTSObject(5, 2001, 2, _square(5, 5))], "s")
    with pytest.raises(HVPSError, match=r"frame 6: masks of different sizes"):
        check_no_overlap(
            [MOTSObject(6, 2001, 2, _square(0, 0)), MOTSObject(6, 2002, 2, _square(5, 5, 2, (9, 9)))], "s"
        )
    # The same id in different frames is fine, as are overlaps across frames.
    check_no_overlap([MOTSObject(1, 2001, 2, _square(0, 0)), MOTSObject(2, 2001, 2, _square(0, 0))], "s")


# ---------------------------------------------------------------- COCO panoptic
@SETTINGS
@given(ids=arrays(np.int64, shapes, elements=st.integers(0, 256**3 - 1)))
def test_rgb_id_round_trip(ids: np.ndarray) -> None:
    rgb = id_to_rgb(ids)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb_to_id(rgb), ids)


def test_rgb_to_id_channel_order() -> None:
    assert int(rgb_to_id(np.array([1, 2, 3], np.uint8))) == 1 + 2 * 256 + 3 * 65536
    assert id_to_rgb(np.int64(26001)).tolist() == [145, 101, 0]


@SETTINGS
@given(data=st.data(), shape=shapes, count=st.integers(1, 3))
def test_coco_panoptic_round_trip(
    tmp_path: Path, data: st.DataObject, shape: tuple[int, int], count: int
) -> None:
    categories = [{"id": 7, "name": "road", "isthing": 0}, {"id": 24, "name": "person", "isthing": 1}]
    images, maps = [], []
    for index in range(count):
        palette = [0, 7, 24, 24001, 24002, 16777215]
        ids = data.draw(arrays(np.int64, shape, elements=st.sampled_from(palette)))
        category_of = {v: (24 if v in (24, 24001, 24002) else 7) for v in palette}
        segments = segments_from_ids(ids, category_of, crowd_ids=[24])
        images.append(
            PanopticImage(index, f"{index:06d}.png", shape[0], shape[1], f"{index:06d}.png", segments)
        )
        maps.append(ids)
    json_path = tmp_path / "annotations.json"
    write_coco_panoptic(json_path, tmp_path / "annotations", images, maps, categories)
    coco = read_coco_panoptic(json_path, tmp_path / "annotations")
    assert coco.categories == categories
    assert coco.images == images
    for image, ids in zip(coco.images, maps, strict=True):
        back = coco.read_ids(image)
        np.testing.assert_array_equal(back, ids)
        for seg in image.segments:  # JSON segments agree with the PNG
            mask = back == seg.id
            assert seg.area == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert seg.bbox == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert {s.id for s in image.segments} == set(np.unique(ids).tolist()) - {0}


def test_to_semantic_instance_by_category_name() -> None:
    ids = np.array([[7, 24001, 24002, 24, 0, 99]])
    categories = [{"id": 7, "name": "road"}, {"id": 24, "name": "person"}, {"id": 99, "name": "unknown"}]
    segments = segments_from_ids(ids, {7: 7, 24001: 24, 24002: 24, 24: 24, 99: 99}, crowd_ids=[24])
    classes = category_to_class(categories, ("road", "sidewalk", "person"))
    assert classes == {7: 0, 24: 2, 99: 255}
    semantic, instance = to_semantic_instance(ids, segments, classes, thing_ids=[2])
    assert semantic.tolist() == [[0, 2, 2, 2, 255, 255]]
    assert instance.tolist() == [[0, 1, 2, 0, 0, 0]]


def test_coco_panoptic_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HVPSError, match=r"bad\.json: not a readable JSON"):
        read_coco_panoptic(bad, tmp_path)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(HVPSError, match=r"bad\.json: not a COCO panoptic file"):
        read_coco_panoptic(bad, tmp_path)
    bad.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1, "file_name": "a.png"}]}))
    with pytest.raises(HVPSError, match=r"bad\.json: annotation 0: image_id 1 has no 'images' entry"):
        read_coco_panoptic(bad, tmp_path)
    # A PNG whose size disagrees with the JSON.
    image = PanopticImage(1, "a.png", 4, 4, "a.png", [])
    write_coco_panoptic(tmp_path / "ok.json", tmp_path / "png", [image], [np.zeros((4, 4), np.int64)], [])
    coco = read_coco_panoptic(tmp_path / "ok.json", tmp_path / "png")
    coco.images[0].height = 5
    with pytest.raises(HVPSError, match=r"a\.png: size 4x4 differs"):
        coco.read_ids(coco.images[0])
