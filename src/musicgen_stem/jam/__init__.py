"""Jam: an endless, tempo-locked stem accompanist. A loop of kept stems plays over and over and the
model writes a new take of the other stems for every cycle, one cycle ahead (`session`), handed to
the sound card or a pipe on the clock (`player`, `sinks`) and written whole at the end (`output`)."""
