"""Training: shared pieces (checkpoints, optimisation, distributed set-up) and the codec/LM trainers."""
