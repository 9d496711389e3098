import numpy as np
import pytest
import torch

from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB, StemLayout
from musicgen_stem.lm.pattern import build_sequence, num_steps, revert_logits, revert_sequence

LAYOUTS = [LAYOUT_6CB, LAYOUT_7CB, StemLayout(("bass", "drums", "other"), (1, 1, 1), (2, 0, 1), card=16)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["6cb", "7cb", "custom"])
@pytest.mark.parametrize("T", [1, 7, 50])
def test_build_revert_round_trip(layout, T):
    codes = torch.randint(0, layout.card, (2, layout.num_streams, T))
    seq, mask = build_sequence(codes, layout.delays, layout.special_token)
    assert seq.shape == (2, layout.num_streams, num_steps(T, layout.delays))
    assert torch.equal(revert_sequence(seq, layout.delays, T), codes)
    # every position outside the pattern holds the special token; inside, a real code
    assert (seq[:, ~mask] == layout.special_token).all()
    assert (seq[:, mask] < layout.card).all()
    assert (seq[..., 0] == layout.special_token).all()  # the leading all-special step
    for k, d in enumerate(layout.delays):  # stream k is shifted by 1 + delay[k]
        assert torch.equal(seq[:, k, 1 + d : 1 + d + T], codes[:, k])


def test_unsorted_delays_are_respected():
    codes = torch.arange(7 * 3).view(1, 7, 3)
    seq, _ = build_sequence(codes, LAYOUT_7CB.delays, 2048)
    assert seq[0, 1, 1] == 2048 and seq[0, 1, 2] == codes[0, 1, 0]  # bass codebook 2 is delayed by 1
    assert seq[0, 2, 1] == codes[0, 2, 0]  # drums is not delayed


def test_revert_logits_maps_outputs_to_frames():
    delays = (0, 2)
    T, card = 5, 3
    S = T + 1
    logits = torch.arange(S, dtype=torch.float)[None, :, None, None].expand(1, S, 2, card).clone()
    frame_logits, mask = revert_logits(logits, delays, T)
    # frame t of stream k is predicted by the output at step t + delay[k]
    assert frame_logits[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert frame_logits[0, 1, :3, 0].tolist() == [2, 3, 4]
    assert mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    assert torch.isnan(frame_logits[0, 1, 3:]).all()


def test_matches_reference_pattern(ref_fixture):
    g = np.load(ref_fixture / "golden.npz")
    seq, _ = build_sequence(torch.from_numpy(g["tf_codes"]), LAYOUT_6CB.delays, 2048, valid_steps_only=True)
    np.testing.assert_array_equal(seq.numpy(), g["tf_pattern_sequence"])
