"""The only part of medimg that imports streamlit: session state, cache wrappers, shared widgets.

Pages import from here (and from ``medimg_core`` for types and pure functions); they never import
scikit-learn, shap or numpy directly.
"""

from __future__ import annotations
