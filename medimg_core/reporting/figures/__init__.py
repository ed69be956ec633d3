"""Figure builders by subject: results in, ``plotly.graph_objects.Figure`` out.

``evaluation`` (ROC, PR, calibration, confusion), ``explanation`` (SHAP), ``data`` (cleaning, profile) and ``images``.
"""
