"""The command line's shared pieces: options, model loading and checks (see `options`).

`musicgen_stem.cli` builds the `musicgen-stem` parser and runs the commands on top of these;
modules with their own command (app, trainers) import from here, never from `cli`.
"""
