"""The "other" stem's parts: chords in one of ten playing styles, and an optional lead melody."""

from __future__ import annotations

import numpy as np

from .score import ChordSpan, Score, chord_at
from .tables import HARMONY_CHANNEL, LEAD_CHANNEL
from .theory import scale_pcs, voicing

STRUM_PATTERNS = ("D.D.DUDU", "D...DUDU", "D.DU.UDU", "D..D..D.")
ARP_ORDERS = ("up", "updown", "down", "broken")
_FUNK = ("..x.x..x.x.x..x.", "x..x..x...x..x..", ".x.x.x...x.x.x.x", "..x...x...x.x.x.")
_STAB = ("..x...x...x...x.", "x..x..x...x..x..", "..x..x....x..x..")
_SKANK = ("....x.......x...", "..x...x...x...x.")
_SHUFFLE = ("x.x.x.x.x.x.x.x.", "....x..x....x..x", "x...x...x...x...")
_HIT_LENGTH = {"funk": 0.7, "stab": 1.2, "skank": 1.0, "shuffle": 1.5}
LEAD_RHYTHMS = (
    ((0, 4), (4, 4), (8, 4), (12, 4)),
    ((0, 6), (6, 2), (8, 8)),
    ((0, 2), (2, 2), (4, 4), (8, 2), (10, 2), (12, 4)),
    ((0, 8), (8, 8)),
    ((2, 2), (4, 4), (8, 6), (14, 2)),
    ((0, 3), (3, 3), (6, 2), (8, 8)),
    ((0, 4), (6, 2), (8, 2), (10, 6)),
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _arpeggio(v: list[int], order: str) -> list[int]:
    seq = v + [v[0] + 12]
    if order == "down":
        return seq[::-1]
    if order == "updown":
        return seq + seq[-2:0:-1]
    if order == "broken":
        return [seq[0], seq[2 % len(seq)], seq[1], seq[-1]]
    return seq


def write_harmony(sc: Score, style: str, chords: list[ChordSpan], n_bars: int, cpb: int, vel: float) -> None:
    """Add the chords (``cpb`` per bar) played in ``style`` to ``sc``."""
    rng, ch = sc.rng, HARMONY_CHANNEL
    prev: list[int] | None = None
    strum, arp_order = _pick(rng, STRUM_PATTERNS), _pick(rng, ARP_ORDERS)
    arp_rate = int(rng.choice([2, 2, 1])) if style == "arpeggio" else 2
    hits = {"funk": _pick(rng, _FUNK), "stab": _pick(rng, _STAB)}
    hits |= {"skank": _pick(rng, _SKANK), "shuffle": _pick(rng, _SHUFFLE)}
    power_rate = int(rng.choice([2, 2, 1]))
    for bar in range(n_bars):
        for seg in range(cpb):
            seg_step, seg_len = seg * 16 // cpb, 16 // cpb
            c = chord_at(chords, bar, seg_step, cpb)
            if c is None:
                return
            if style == "power":
                r = 40 + (c.root_pc - 4) % 12
                for s in range(seg_step, seg_step + seg_len, power_rate):
                    accent = s % 8 == 0
                    ln = power_rate * (2 if accent and rng.random() < 0.3 else 1)
                    sc.add(ch, r, 100 * vel * (1.0 if accent else 0.8), bar, s, ln, gate=0.8)
                    if accent or rng.random() < 0.5:
                        for p in (r + 7, r + 12):
                            sc.add(ch, p, 92 * vel, bar, s, ln, gate=0.8)
                continue
            center = {"block": 62, "arpeggio": 64, "strum": 60}.get(style, 66)
            v = prev = voicing(c.pcs(), prev, center, center - 10, center + 12)
            if style == "block":
                ln = seg_len if rng.random() < 0.7 or seg_len < 16 else 8
                for s in range(seg_step, seg_step + seg_len, ln):
                    for p in v:
                        sc.add(ch, p, 78 * vel, bar, s, ln, gate=0.98, jitter=3)
            elif style == "arpeggio":
                seq = _arpeggio(v, arp_order)
                for k, s in enumerate(range(seg_step, seg_step + seg_len, arp_rate)):
                    sc.add(
                        ch,
                        seq[k % len(seq)],
                        80 * vel * (1.0 if s % 4 == 0 else 0.85),
                        bar,
                        s,
                        arp_rate * 1.5,
                        gate=1.0,
                    )
            elif style == "strum":
                full = [v[0] - 12] + v
                for k, c8 in enumerate(strum):
                    s = k * 2
                    if c8 == "." or not seg_step <= s < seg_step + seg_len:
                        continue
                    order = full if c8 == "D" else full[::-1]
                    for j, p in enumerate(order):
                        sc.add(ch, p, 82 * vel * (1.0 if c8 == "D" else 0.8), bar, s + j * 0.08, 2, jitter=2)
            elif style in hits:
                for s in range(seg_step, seg_step + seg_len):
                    if hits[style][s] == "x":
                        for p in v:
                            sc.add(ch, p, 86 * vel, bar, s, _HIT_LENGTH[style], jitter=3)
            elif style == "jazz":
                n_hits = int(rng.integers(1, 3)) if cpb == 2 else int(rng.integers(2, 4))
                cand = [s for s in (0, 2, 4, 6, 10, 12, 14) if s < seg_len]
                for s in sorted(rng.choice(cand, size=min(n_hits, len(cand)), replace=False)):
                    ln = float(rng.choice([1.5, 2, 3]))
                    for p in v:
                        sc.add(ch, p, 72 * vel, bar, seg_step + int(s), ln, jitter=4)
            else:
                raise ValueError(f"unknown part style {style!r}")


def write_lead(
    sc: Score,
    tonic_pc: int,
    mode: str,
    chords: list[ChordSpan],
    n_bars: int,
    cpb: int,
    start_bar: int,
    vel: float,
) -> None:
    """Add a melody from ``start_bar`` on: a two-bar motif, chord tones on beats, scale steps between."""
    rng = sc.rng
    scale = scale_pcs(tonic_pc, mode)
    motif = [LEAD_RHYTHMS[int(i)] for i in rng.integers(len(LEAD_RHYTHMS), size=2)]
    pitch = 72 + tonic_pc % 12 - (12 if tonic_pc > 5 else 0)
    for bar in range(start_bar, n_bars):
        k = bar - start_bar
        rhythm = motif[k % 2] if k % 4 != 3 else ((0, 4), (4, 12))
        for s, ln in rhythm:
            c = chord_at(chords, bar, s, cpb)
            if c is None:
                return
            if rng.random() < 0.08:
                continue
            if s % 4 == 0:
                tones = c.pcs()
                cands = [p for p in range(pitch - 7, pitch + 8) if p % 12 in tones]
            else:
                cands = [p for p in range(pitch - 4, pitch + 5) if p % 12 in scale and p != pitch]
            cands = [p for p in cands if 62 <= p <= 86] or [pitch]
            weights = np.array([1.0 / (1 + abs(p - pitch)) for p in cands])
            pitch = int(rng.choice(cands, p=weights / weights.sum()))
            sc.add(LEAD_CHANNEL, pitch, 92 * vel * (1.0 if s % 8 == 0 else 0.9), bar, s, ln, gate=0.9)
