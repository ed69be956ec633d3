"""Storage: model files (skops + card), the run registry, saved runs and the cases beside them,
and local accounts (users, projects, memberships) and the audit trail in the registry's database.

Builds on ``modelling``; the only layer that writes models and runs to the workspace.
"""
