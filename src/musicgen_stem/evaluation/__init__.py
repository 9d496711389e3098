"""Evaluation: editing coherence (rhythm, harmony), codec fidelity (incl. what a musician hears: pitch,
chroma, onsets, frame-rate artifacts, codebook use), distribution metrics,
text control (tempo, key, pitch content, instruments), reports.

```python
from musicgen_stem.evaluation import evaluate_editing, evaluate_codec, write_report
edit = evaluate_editing(model, "data/heldout", ["bass"], duration=8, seed=0)
write_report("report", [edit, evaluate_codec(model, "data/heldout")])
```
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".codec_metrics": (
            "chroma_metrics",
            "codebook_stats",
            "codec_song_metrics",
            "comb_share",
            "onset_metrics",
            "pitch_metrics",
            "pitch_track",
        ),
        ".distribution": (
            "codec_latent_embedding",
            "external_embedders",
            "frechet_distance",
            "logmel_embedding",
        ),
        ".fidelity": (
            "bitrate",
            "codec_fidelity",
            "multiscale_mel_distance",
            "round_trip",
        ),
        ".harmony": (
            "Key",
            "chord_chroma",
            "chord_span_correlation",
            "chord_tone_ratio",
            "chroma",
            "chroma_correlation",
            "estimate_key",
            "key_relation",
        ),
        ".probes": (
            "bass_line_check",
            "probe_metrics",
            "pure_tone_check",
        ),
        ".report": (
            "markdown_summary",
            "write_report",
        ),
        ".rhythm": (
            "ONSET_THRESHOLDS",
            "beat_f_measure",
            "detect_onsets",
            "estimate_tempo",
            "grid_fraction",
            "grid_phase_lock",
            "onset_strength",
            "track_beats",
        ),
        ".runner": (
            "EvaluationResult",
            "evaluate_codec",
            "evaluate_editing",
            "evaluate_generation",
        ),
        ".songs": (
            "Song",
            "find_songs",
            "load_song",
        ),
        ".text_control": (
            "PromptSpec",
            "evaluate_text_control",
            "load_prompt_file",
        ),
    },
)
