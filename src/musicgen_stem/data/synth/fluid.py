"""In-process FluidSynth (``libfluidsynth`` through ctypes) that renders one part at a time.

Every part is rendered by a fresh synthesizer (FluidSynth keeps state between notes that would otherwise
make a render depend on the previous ones), so the output depends only on the arguments. Samples are
loaded on demand (``synth.dynamic-sample-loading``) and a long-lived "keeper" synthesizer keeps the
presets used so far selected, which holds their samples in FluidSynth's sample cache: the slow decoding
of compressed ``.sf3`` samples happens once per :class:`FluidSynth`, not once per song. Reverb and
chorus are off (the mix adds its own).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence
from types import TracebackType

import numpy as np

from ...errors import MusicGenStemError
from .score import Note
from .soundfonts import APT_HINT
from .tables import TICKS_PER_BEAT

_VP, _INT, _STR, _DBL = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_double
_SIGNATURES = {  # name: (restype, argtypes)
    "new_fluid_settings": (_VP, []),
    "delete_fluid_settings": (None, [_VP]),
    "fluid_settings_setnum": (_INT, [_VP, _STR, _DBL]),
    "fluid_settings_setint": (_INT, [_VP, _STR, _INT]),
    "new_fluid_synth": (_VP, [_VP]),
    "delete_fluid_synth": (None, [_VP]),
    "fluid_synth_sfload": (_INT, [_VP, _STR, _INT]),
    "fluid_synth_program_select": (_INT, [_VP, _INT, _INT, _INT, _INT]),
    "fluid_synth_cc": (_INT, [_VP, _INT, _INT, _INT]),
    "fluid_synth_noteon": (_INT, [_VP, _INT, _INT, _INT]),
    "fluid_synth_noteoff": (_INT, [_VP, _INT, _INT]),
    "fluid_synth_all_sounds_off": (_INT, [_VP, _INT]),
    "fluid_synth_write_float": (_INT, [_VP, _INT, _VP, _INT, _INT, _VP, _INT, _INT]),
    "fluid_set_log_function": (_VP, [_INT, _VP, _VP]),
}
_CHANNELS = 64  # presets kept loaded by the keeper synthesizer


def load_libfluidsynth() -> ctypes.CDLL:
    """The FluidSynth library with the prototypes used here (warnings and info messages silenced)."""
    name = ctypes.util.find_library("fluidsynth")
    try:
        lib = ctypes.CDLL(name or "libfluidsynth.so.3")
    except OSError as e:
        raise MusicGenStemError(
            f"the FluidSynth library is not installed; install it with `{APT_HINT}`"
        ) from e
    for fn, (res, args) in _SIGNATURES.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    for level in (2, 3, 4):  # FLUID_WARN, FLUID_INFO, FLUID_DBG
        lib.fluid_set_log_function(level, None, None)
    return lib


class FluidSynth:
    """Renders parts with FluidSynth; close it (or use ``with``) to free the cached samples."""

    def __init__(self, sample_rate: int, gain: float = 0.5, polyphony: int = 512) -> None:
        self.lib = load_libfluidsynth()
        self.sample_rate = sample_rate
        self._settings = self.lib.new_fluid_settings()
        for key, val in (("synth.sample-rate", float(sample_rate)), ("synth.gain", gain)):
            self.lib.fluid_settings_setnum(self._settings, key.encode(), val)
        ints = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": polyphony}
        ints |= {"synth.dynamic-sample-loading": 1, "synth.midi-channels": _CHANNELS, "synth.cpu-cores": 1}
        for key, ival in ints.items():
            self.lib.fluid_settings_setint(self._settings, key.encode(), ival)
        self._keeper = self._new_synth()
        self._fonts: dict[str, int] = {}  # soundfont ids in the keeper
        self._kept: dict[tuple[str, int, int], int] = {}  # (path, bank, program) -> keeper channel, LRU order

    def _new_synth(self) -> ctypes.c_void_p:
        synth = self.lib.new_fluid_synth(self._settings)
        if not synth:
            raise MusicGenStemError("could not create a FluidSynth synthesizer")
        return synth

    def _load(self, synth: ctypes.c_void_p, path: str) -> int:
        fid = self.lib.fluid_synth_sfload(synth, path.encode(), 0)  # 0: select no preset
        if fid < 0:
            raise MusicGenStemError(f"FluidSynth could not load the soundfont {path}")
        return fid

    def _select(
        self, synth: ctypes.c_void_p, channel: int, fid: int, path: str, bank: int, program: int
    ) -> None:
        if self.lib.fluid_synth_program_select(synth, channel, fid, bank, program) != 0:
            raise MusicGenStemError(f"no preset bank {bank} program {program} in {path}")

    def _keep(self, path: str, bank: int, program: int) -> None:
        """Keep the preset selected in the keeper (least recently used one dropped when full)."""
        key = (path, bank, program)
        ch = self._kept.pop(key, None)
        if ch is None:
            ch = len(self._kept) if len(self._kept) < _CHANNELS else self._kept.pop(next(iter(self._kept)))
            if path not in self._fonts:
                self._fonts[path] = self._load(self._keeper, path)
            self._select(self._keeper, ch, self._fonts[path], *key)
        self._kept[key] = ch

    def close(self) -> None:
        """Free the synthesizers and the cached samples."""
        if self._keeper:
            self.lib.delete_fluid_synth(self._keeper)
            self.lib.delete_fluid_settings(self._settings)
            self._keeper = self._settings = None

    def __enter__(self) -> FluidSynth:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def render(
        self, soundfont: str, bank: int, program: int, notes: Sequence[Note], tempo: float, n_samples: int
    ) -> np.ndarray:
        """``notes`` (ticks at ``tempo``) played by preset ``bank``/``program`` of ``soundfont``:
        float32 [n_samples], the mean of FluidSynth's two output channels."""
        self._keep(soundfont, bank, program)
        lib, syn, ch = self.lib, self._new_synth(), 0
        try:
            self._select(syn, ch, self._load(syn, soundfont), soundfont, bank, program)
            for cc, val in ((7, 100), (10, 64), (11, 127), (91, 0), (93, 0)):
                lib.fluid_synth_cc(syn, ch, cc, val)
            per_tick = self.sample_rate * 60.0 / (tempo * TICKS_PER_BEAT)
            events = [(int(round(n.start * per_tick)), 1, n.pitch, n.velocity) for n in notes]
            events += [(int(round(n.end * per_tick)), 0, n.pitch, 0) for n in notes]
            events.sort()
            left = np.zeros(n_samples, np.float32)
            right = np.zeros(n_samples, np.float32)
            pos = 0
            for t, on, pitch, vel in events:
                if t >= n_samples:
                    break
                if t > pos:
                    self._write(syn, left, right, pos, t)
                    pos = t
                if on:
                    lib.fluid_synth_noteon(syn, ch, pitch, vel)
                else:
                    lib.fluid_synth_noteoff(syn, ch, pitch)
            self._write(syn, left, right, pos, n_samples)
        finally:
            lib.delete_fluid_synth(syn)
        return (0.5 * (left + right)).astype(np.float32)

    def _write(
        self, syn: ctypes.c_void_p, left: np.ndarray, right: np.ndarray, start: int, stop: int
    ) -> None:
        if stop > start:
            l_ptr, r_ptr = left.ctypes.data + 4 * start, right.ctypes.data + 4 * start
            self.lib.fluid_synth_write_float(syn, stop - start, l_ptr, 0, 1, r_ptr, 0, 1)
