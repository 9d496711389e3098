import pytest

from musicgen_stem.layout import LAYOUT_6CB, LAYOUT_7CB, LayoutError, StemLayout


def test_released_layouts():
    assert LAYOUT_6CB.num_streams == 6
    assert LAYOUT_6CB.streams_of("bass") == [0]
    assert LAYOUT_6CB.streams_of("drums") == [1]
    assert LAYOUT_6CB.streams_of("other") == [2, 3, 4, 5]
    assert LAYOUT_7CB.streams_of("bass") == [0, 1]
    assert LAYOUT_7CB.streams_of("drums") == [2]
    assert LAYOUT_7CB.streams_of("other") == [3, 4, 5, 6]
    assert LAYOUT_7CB.delays == (0, 1, 0, 0, 1, 2, 3)
    assert LAYOUT_7CB.special_token == 2048
    assert LAYOUT_7CB.max_delay == 3


def test_custom_layout_and_round_trip():
    layout = StemLayout(("drums", "bass"), (1, 2), (0, 0, 1), card=512)
    assert layout.streams_of_stems(["bass"]) == [1, 2]
    assert layout.stream_slices() == {"drums": slice(0, 1), "bass": slice(1, 3)}
    assert StemLayout.from_dict(layout.to_dict()) == layout
    assert layout.check_stems(["bass", "drums", "bass"]) == ["drums", "bass"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stems": ("bass", "bass"), "codebooks": (1, 1), "delays": (0, 0)}, "unique"),
        ({"stems": ("bass",), "codebooks": (1, 1), "delays": (0, 0)}, "codebook counts"),
        ({"stems": ("bass",), "codebooks": (2,), "delays": (0,)}, "one delay per stream"),
        ({"stems": ("bass",), "codebooks": (1,), "delays": (-1,)}, ">= 0"),
        ({"stems": ("bass",), "codebooks": (0,), "delays": ()}, "at least one codebook"),
    ],
)
def test_invalid_layouts(kwargs, match):
    with pytest.raises(LayoutError, match=match):
        StemLayout(**kwargs)


def test_unknown_stem_names_the_choices():
    with pytest.raises(LayoutError, match="unknown stem 'vocals'.*bass, drums, other"):
        LAYOUT_6CB.streams_of("vocals")
    with pytest.raises(LayoutError, match="unknown layout fields"):
        StemLayout.from_dict({**LAYOUT_6CB.to_dict(), "extra": 1})
