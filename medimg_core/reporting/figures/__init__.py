"""Figure builders by subject: results in, ``plotly.graph_objects.Figure`` out.

``evaluation`` (confusion, ROC, PR, calibration, threshold, model comparison), ``explanation``
(SHAP) and ``data`` (cleaning, flow of cases, distributions) share ``_style``; ``images`` draws
images and occlusion maps; ``volumes`` a 3D case as three orthogonal slices with its mask.
"""
