"""Models: pipeline configs, schema checks, training (split, folds, selection), evaluation, SHAP.

Builds on ``tables`` and ``imaging``; writes nothing to disk (that is ``store``).
"""
