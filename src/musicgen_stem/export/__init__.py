"""Export stems as a DAW-ready stem pack: `musicgen-stem export SRC_OUTPUT_FOLDER --out DIR`.

A pack folder holds::

    <stem>.<ext> ...      one file per stem, in the given order (wav, flac or mp3)
    mix.<ext>             the sum of the stems as written
    stems.json            sidecar: prompt, seed, model, parameters, tempo, source song hash, rate,
                          channels, format, bit depth, gain, duration and the files with their roles
    stems.mid             the notes of every stem (`notes.midi`), with the chord chart the model read
    stems.zip             (--zip) the stem files, mix, stems.json and stems.mid, flat
    <name>.stem.mp4       (--stem-mp4) a Native Instruments STEMS file, <name> = the pack folder's name

Every file has the same length and rate. Stems of unequal length are zero-padded at the end to the
longest; each stem is then resampled once (julius) to the output rate, which gives
floor(T * out_rate / in_rate) samples, and cropped / zero-padded to exactly that (a no-op with the
current julius, at most a sample or two otherwise). Nothing is normalised per stem: when the mix or a
stem would peak above 0.999, one shared gain scales every stem and the mix (`gain` in stems.json;
divide by it to get the original levels). Float WAV never clips, so it keeps gain 1 unless a
.stem.mp4 is written too. For 16/24-bit PCM each stem is rounded to the PCM grid and the mix is the
exact sum of the rounded stems. Lossy formats (MP3, AAC) may overshoot the peak slightly on decoding.

The .stem.mp4 holds 5 AAC streams (256 kbps, 44.1 kHz, stereo): stream 0 the master (the mix), then
the NI slots drums, bass, other, vocals. A stem of another name is added to the `other` slot; a slot
with no stem is a silent track. Only stream 0 is flagged enabled, so ordinary players play the mix.
The NI metadata (`moov/udta/stem` box holding the JSON with `stems` names/colours, `mastering_dsp`
and `version`) is appended to the MP4 after PyAV wrote it (PyAV cannot write custom atoms).

Writes are atomic (temporary sibling folder renamed into place, removed on failure); an existing
non-empty folder is refused unless `force`, and then only the entries we write are replaced.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".cli": (
            "add_arguments",
            "run",
        ),
        ".spec": ("BIT_DEPTHS", "FORMATS", "RATES", "SIDECAR_FILE", "ZIP_FILE"),
        ".ni_stems": ("NI_SLOTS",),
        ".pack": (
            "ExportResult",
            "export_stem_pack",
            "file_sha256",
        ),
    },
)
