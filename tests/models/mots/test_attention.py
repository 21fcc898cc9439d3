from __future__ import annotations

import pytest
import torch

from hvps_lightning.models.mots import MOTSNet, TemporalAttention


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


def test_network_with_identical_frames_uses_the_plain_features(tiny_net: dict) -> None:
    torch.manual_seed(0)
    net = MOTSNet("motchallenge_step", **tiny_net).eval()
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
