"""`musicgen-stem prepare`: turn songs and multitrack folders into the LM's token dataset.

```
OUT/
  prepare.json     {"layout", "frame_rate", "sample_rate", "codec_model", "codec_hash", "version"}
  index.jsonl      one object per track: {"id", "tokens", "frames", "captions", "duration", "source",
                   "codec_hash"}
  tokens/<id>.npy  int16 [K, F]: codes of the whole track, all stems in layout order
  stems/<id>/      {bass,drums,other,vocals}.wav separated from a song (float wav, song's rate); cached
```

Inputs (several folders, searched recursively):
  * a folder holding `bass`, `drums` and `other` audio files (`vocals` optional; e.g. MUSDB tracks or
    `musicgen-stem synth` songs) is a multitrack: its stems are used as they are;
  * any other audio file is a song, separated with Demucs (once: `stems/<id>/` is reused).
Captions (each track may have none: it then trains unconditionally): a `<song>.txt` beside a song
(one caption per non-empty line), `captions.txt`/`caption.txt` or a `meta.json` ("caption" /
"captions") inside a multitrack folder, and `metadata.jsonl` lines {"path" or "file", "caption" or
"captions"} in any folder, paths relative to that folder.

Encoding: each stem is resampled to the codec rate and encoded whole-track-equivalently: the codec's
convolutional front end (everything before its LSTM) runs on `chunk_seconds` chunks with enough
context on both sides to cover its receptive field, and the LSTM and last layers run on the joined
latent. This gives the codes of encoding the whole track at once (`MusicGenStem.encode_stems`)
while the memory of the front end stays bounded by the chunk size.

Resuming: tokens are written atomically and their index line is appended after, so a killed run
continues where it stopped. Tracks whose index entry has the current `codec_hash` are skipped;
an OUT made with other codecs is refused unless `force` (then its tracks are re-encoded).
"""

from __future__ import annotations

from ...lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".cli": (
            "add_arguments",
            "run",
        ),
        ".dataset": (
            "PREPARE_VERSION",
            "prepare_dataset",
        ),
        ".tokens": (
            "CodecBundle",
            "codec_hash",
            "encode_track",
            "load_codecs",
        ),
        ".tracks": (
            "AUDIO_EXTENSIONS",
            "Track",
            "discover",
        ),
    },
)
