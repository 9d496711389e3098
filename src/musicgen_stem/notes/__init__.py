"""Notes in and out of audio: transcription of each kind of stem, and `stems.mid`."""
