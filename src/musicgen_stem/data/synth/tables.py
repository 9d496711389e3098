"""Constants and lookup tables: audio format, MIDI channels, General MIDI programs, drum kits and patterns."""

from __future__ import annotations

SAMPLE_RATE = 32000
STEMS = ("bass", "drums", "other")
TICKS_PER_BEAT = 480
STEP = TICKS_PER_BEAT // 4  # one 16th note
BASS_CHANNEL, HARMONY_CHANNEL, LEAD_CHANNEL, DRUM_CHANNEL = 0, 1, 2, 9
#: Roles of the parts that make up each stem.
STEM_ROLES: dict[str, tuple[str, ...]] = {
    "bass": ("bass",),
    "drums": ("drums",),
    "other": ("harmony", "lead"),
}

# General MIDI programs used here: (official GM name, plain words for captions).
GM_PROGRAMS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("Acoustic Grand Piano", ("piano", "grand piano", "acoustic piano")),
    1: ("Bright Acoustic Piano", ("bright piano", "piano")),
    4: ("Electric Piano 1", ("electric piano", "Rhodes", "Rhodes piano")),
    5: ("Electric Piano 2", ("electric piano", "FM electric piano")),
    11: ("Vibraphone", ("vibraphone", "vibes")),
    16: ("Drawbar Organ", ("organ", "Hammond organ", "drawbar organ")),
    17: ("Percussive Organ", ("organ", "percussive organ")),
    18: ("Rock Organ", ("rock organ", "organ")),
    22: ("Harmonica", ("harmonica", "blues harp")),
    24: ("Acoustic Guitar (nylon)", ("nylon guitar", "classical guitar", "acoustic guitar")),
    25: ("Acoustic Guitar (steel)", ("acoustic guitar", "steel-string guitar")),
    26: ("Electric Guitar (jazz)", ("jazz guitar", "hollow-body guitar")),
    27: ("Electric Guitar (clean)", ("clean electric guitar", "clean guitar")),
    28: ("Electric Guitar (muted)", ("muted guitar", "palm-muted guitar")),
    29: ("Overdriven Guitar", ("overdriven guitar", "crunchy guitar")),
    30: ("Distortion Guitar", ("distorted guitar", "heavy guitar")),
    32: ("Acoustic Bass", ("upright bass", "double bass", "acoustic bass")),
    33: ("Electric Bass (finger)", ("electric bass", "fingered bass", "bass guitar")),
    34: ("Electric Bass (pick)", ("picked bass", "electric bass")),
    35: ("Fretless Bass", ("fretless bass",)),
    36: ("Slap Bass 1", ("slap bass",)),
    37: ("Slap Bass 2", ("slap bass", "popping bass")),
    38: ("Synth Bass 1", ("synth bass",)),
    39: ("Synth Bass 2", ("synth bass", "analog bass")),
    48: ("String Ensemble 1", ("strings", "string ensemble")),
    49: ("String Ensemble 2", ("strings", "slow strings")),
    50: ("Synth Strings 1", ("synth strings",)),
    52: ("Choir Aahs", ("choir", "vocal pads")),
    56: ("Trumpet", ("trumpet",)),
    61: ("Brass Section", ("brass", "horn section")),
    62: ("Synth Brass 1", ("synth brass",)),
    65: ("Alto Sax", ("alto sax", "saxophone")),
    66: ("Tenor Sax", ("tenor sax", "saxophone")),
    73: ("Flute", ("flute",)),
    80: ("Lead 1 (square)", ("square lead", "synth lead")),
    81: ("Lead 2 (sawtooth)", ("sawtooth lead", "synth lead")),
    89: ("Pad 2 (warm)", ("warm pad", "synth pad")),
    90: ("Pad 3 (polysynth)", ("polysynth pad", "synth pad")),
}
PAD_PROGRAMS = frozenset({48, 49, 50, 52, 89, 90})

# General MIDI drum kits (bank 128 programs) and caption words for each.
DRUM_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz", 40: "Brush"}
KIT_WORDS: dict[str, tuple[str, ...]] = {
    "Standard": ("drums", "a drum kit", "acoustic drums"),
    "Room": ("roomy drums", "a room drum kit", "ambient drums"),
    "Power": ("big power drums", "a power drum kit", "booming drums"),
    "Electronic": ("electronic drums", "a drum machine", "electronic beats"),
    "TR-808": ("808 drums", "a TR-808 drum machine", "808 beats"),
    "Jazz": ("a jazz kit", "jazz drums", "light drums"),
    "Brush": ("brushed drums", "a brush kit", "brushes"),
    "sampled": ("a live drum kit", "sampled acoustic drums", "a real drum kit", "live drums"),
}
#: GM kits that a sampled acoustic kit can stand in for.
ACOUSTIC_KITS = frozenset({0, 8, 16, 32})

# Words that follow an instrument name, by part style.
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "block": ("chords", "sustained chords"),
    "arpeggio": ("arpeggios", "arpeggiated chords"),
    "strum": ("strumming", "strummed chords"),
    "power": ("power chords", "riffs"),
    "funk": ("comping", "funky stabs", "choppy rhythm"),
    "jazz": ("comping", "chord comping"),
    "stab": ("stabs", "chord stabs"),
    "skank": ("offbeat skank", "offbeat chords"),
    "shuffle": ("shuffle comping", "chords"),
    "lead": ("melody", "lead melody", "lead line"),
}
BASS_STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "root": ("",),
    "root8": ("driving", ""),
    "root_fifth": ("",),
    "octave": ("octave", "bouncing"),
    "walking": ("walking",),
    "funk": ("funky", "syncopated"),
    "sustained": ("warm", "smooth"),
    "offbeat": ("offbeat", "pumping"),
    "reggae": ("deep", "melodic"),
    "hiphop": ("deep", "heavy"),
    "root16": ("chugging", "pounding"),
    "boogie": ("boogie", "shuffling"),
}

# Drum voices -> GM note on channel 10.
DRUM_NOTES = {
    "K": 36, "S": 38, "R": 37, "C": 39, "H": 42, "P": 44, "O": 46, "Y": 51, "B": 53, "X": 49,
    "T1": 50, "T2": 47, "T3": 45, "F": 41, "TB": 54, "CB": 56, "SH": 70, "CG": 63, "CL": 64, "CV": 75,
}  # fmt: skip
# The AVL sampled kits (avldrums.lv2-soundfont) map keys 36-61 much like GM, but 48/50 are a hi-hat swish
# and a crash choke, 58/60 cymbals and 61 a maraca, and nothing sounds above 61: toms and shaker move.
SAMPLED_KIT_NOTES = {**DRUM_NOTES, "T1": 45, "T2": 43, "T3": 41, "SH": 61, "CG": 54, "CL": 37, "CV": 37}
DRUM_VELOCITY = {"X": 116, "x": 94, "o": 42}

FILLS: dict[str, dict[str, str]] = {
    "snare16": {"S": "............xxxX"},
    "toms1": {"T1": "............xx..", "T2": "..............x.", "F": "...............X"},
    "toms2": {
        "S": "........xx......",
        "T1": "..........xx....",
        "T2": "............xx..",
        "F": "..............xX",
    },
    "snare_toms": {"S": "........x.x.x...", "T2": "............x.x.", "F": ".............x.X"},
    "clap_roll": {"C": "........xxxxxxxX"},
    "snare_roll": {"S": "........x.x.xxxX"},
    "jazz": {"S": "..........x...X.", "K": "...............x"},
    "hat_open": {"O": "..............x."},
}
