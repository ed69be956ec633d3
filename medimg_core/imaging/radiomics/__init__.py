"""Standard (IBSI) radiomic features of a 3D volume inside a segmented region.

One module per feature family, as PyRadiomics arranges them (``glcm.py``, ``glrlm.py`` …). Each
feature is one small function registered with :func:`catalogue.feature`; its docstring gives the
one-line meaning shown in the app and the model card, and the registration its IBSI code and
PyRadiomics-style name, so the catalogue is generated from the code.

``roi`` holds the prepared region (:class:`roi.RoiContext`) every family reads; ``preprocess``
makes it (resampling, re-segmentation, discretisation); ``settings`` reads PyRadiomics-layout
YAML; ``extract`` runs the enabled families on one volume and mask.
"""
