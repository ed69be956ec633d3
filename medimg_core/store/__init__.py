"""Storage: model files (skops + card), the run registry, saved runs and the cases beside them.

Builds on ``modelling``; the only layer that writes models and runs to the workspace.
"""
