from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from hvps_lightning.models.mots import StreamingMOTS, TemporalAttention


def _random_attention(channels: int = 8, seed: int = 0) -> TemporalAttention:
    torch.manual_seed(seed)
    attention = TemporalAttention(channels, hidden_channels=4)
    # Large logit weights: the weights are far from uniform, so the checks below are not trivial.
    torch.nn.init.normal_(attention.logits.weight, std=2.0)
    return attention


@pytest.mark.parametrize("target_index", [0, 1, 2])
def test_weights_sum_to_one_over_frames(target_index: int) -> None:
    attention = _random_attention()
    clip = torch.randn(2, 3, 8, 5, 7)
    weights = attention.weights(clip, target_index)
    assert weights.shape == (2, 3, 5, 7)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 5, 7))
    # ... and they are not uniform: the module does attend.
    assert weights.std() > 0.05


def test_fused_features_are_the_weighted_sum_of_the_frames() -> None:
    attention = _random_attention()
    clip = torch.randn(1, 3, 8, 4, 4)
    weights = attention.weights(clip, 2)
    expected = sum(weights[:, t, None] * clip[:, t] for t in range(3))
    torch.testing.assert_close(attention(clip, 2), expected)


def test_identical_frames_give_the_plain_features_back() -> None:
    attention = _random_attention()
    frame = torch.randn(2, 8, 6, 5)
    clip = frame[:, None].expand(2, 3, 8, 6, 5).contiguous()
    for target_index in range(3):
        torch.testing.assert_close(attention(clip, target_index), frame, rtol=1e-5, atol=1e-5)


def test_the_target_indicator_changes_the_weights() -> None:
    attention = _random_attention()
    clip = torch.randn(1, 3, 8, 4, 4)
    assert not torch.allclose(attention.weights(clip, 0), attention.weights(clip, 2))


def test_bad_inputs_raise() -> None:
    attention = TemporalAttention(8)
    with pytest.raises(ValueError, match="target_index 3"):
        attention(torch.randn(1, 3, 8, 4, 4), 3)
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        attention(torch.randn(3, 8, 4, 4), 0)
    with pytest.raises(ValueError, match="odd kernel_size"):
        TemporalAttention(8, kernel_size=2)


def test_network_with_identical_frames_uses_the_plain_features(make_net: Callable) -> None:
    net = make_net().eval()
    for module in net.temporal_attention.values():
        torch.nn.init.normal_(module.logits.weight, std=2.0)
    frame = torch.randn(1, 3, 64, 96)
    clip = frame[:, None].expand(1, 3, 3, 64, 96)
    with torch.no_grad():
        fused = net.clip_features(clip, target_index=2)
        plain = net.frame_features(frame)
    assert list(fused) == ["0", "1", "2", "3", "pool"]
    for level in plain:
        torch.testing.assert_close(fused[level], plain[level], rtol=1e-4, atol=1e-5)


def test_a_list_of_frame_maps_equals_the_stacked_clip() -> None:
    attention = _random_attention()
    clip = torch.randn(2, 3, 8, 5, 7)
    torch.testing.assert_close(attention(list(clip.unbind(1)), 1), attention(clip, 1))
    with pytest.raises(ValueError, match="one \\(B, C, H, W\\) shape"):
        attention([clip[:, 0], clip[:, 1, :, :4]], 0)


def stacked_3d_reference(
    attention: TemporalAttention, frames: Sequence[torch.Tensor], target_index: int
) -> torch.Tensor:
    """The textbook formulation (the module's first one): stack the clip, run the Conv3d modules."""
    hidden = F.relu(attention.reduce(torch.stack(list(frames), dim=2)))
    indicator = torch.zeros_like(hidden[:, :1])
    indicator[:, :, target_index] = 1.0
    hidden = torch.cat([hidden, indicator], dim=1)
    for conv in attention.body:
        hidden = F.relu(conv(hidden))
    return torch.softmax(attention.logits(hidden)[:, 0].float(), dim=1)


@pytest.mark.parametrize(("num_layers", "kernel_size", "frames"), [(1, 3, 3), (0, 3, 3), (2, 3, 4), (1, 5, 2),
                                                                   (0, 1, 3), (1, 3, 1)])  # fmt: skip
def test_weights_equal_the_stacked_3d_convolutions(num_layers: int, kernel_size: int, frames: int) -> None:
    torch.manual_seed(num_layers * 10 + kernel_size)
    attention = TemporalAttention(8, 5, num_layers=num_layers, kernel_size=kernel_size).double()
    for conv in [*attention.body, attention.logits]:
        torch.nn.init.normal_(conv.weight, std=0.5)  # far from uniform weights
    clip = [torch.randn(2, 8, 7, 9, dtype=torch.float64) for _ in range(frames)]
    for target_index in range(frames):
        expected = stacked_3d_reference(attention, clip, target_index)
        torch.testing.assert_close(attention.weights(clip, target_index), expected, rtol=1e-6, atol=1e-7)
        reduced = [attention.reduce_frame(f) for f in clip]
        fused = attention(clip, target_index, reduced=reduced)
        torch.testing.assert_close(fused, attention(clip, target_index))


def test_streaming_reduces_each_frame_once(make_net: Callable) -> None:
    net = make_net().eval()
    calls: list[int] = []
    for module in net.temporal_attention.values():
        original = module.reduce_frame
        module.reduce_frame = lambda f, original=original: calls.append(1) or original(f)  # type: ignore[method-assign]
    streamer = StreamingMOTS(net)
    with torch.no_grad():
        for _ in range(4):
            streamer.push(torch.randn(3, 64, 96))
    assert len(calls) == 4 * len(net.temporal_attention)  # one reduction per frame and level, not per window
