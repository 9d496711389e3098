"""The Python API: `MusicGenStem`, with audiocraft-compatible method names.

`model` (the class and its tasks), `options` (`Options`: the keyword options of every task),
`decoding` (how a task runs), `results` (`StemAudio`, `AudioChunk`), `streaming` (`AudioStream`)
and `loading` (local folder, released format, hub); the public names are re-exported here.

```python
model = MusicGenStem.get_pretrained("path/to/model")
model.set_generation_params(duration=8)
out = model.generate(["funky drums and slap bass"], seed=1)  # out["bass"]: [B, C, T]; out.mix
new = model.regenerate_from_codes(out.codes, ["bass"], ["a walking bass"], seed=2)
for chunk in model.generate_stream(["ambient pads"], seed=3):  # audio while it is generated
    play(chunk.mix)  # chunk.stems["bass"]: [B, C, n] from sample chunk.start
```
"""

from __future__ import annotations

from .checks import DTYPES, MAX_SECONDS, Progress, Texts, auto_dtype
from .loading import default_model_path
from .model import MusicGenStem
from .options import Options
from .results import AudioCallback, AudioChunk, StemAudio, StreamJob
from .streaming import STREAM_SECONDS, AudioStream

__all__ = [
    "DTYPES",
    "MAX_SECONDS",
    "STREAM_SECONDS",
    "AudioCallback",
    "AudioChunk",
    "AudioStream",
    "MusicGenStem",
    "Options",
    "Progress",
    "StemAudio",
    "StreamJob",
    "Texts",
    "auto_dtype",
    "default_model_path",
]
