"""The command line's pieces: shared options, model loading and checks (`options`), and the
built-in commands (`generate`, `edit`, `model_files`, `synth`).

`musicgen_stem.cli` builds the `musicgen-stem` parser and dispatches to these; modules with their own
command (app, trainers) import from `options`, never from `cli`. Heavy modules (torch, the model) are
imported inside the command functions, so that `--help` stays fast.
"""
