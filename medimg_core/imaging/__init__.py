"""Images in, feature tables out: image sets and archives, DICOM, named features and occlusion.

Builds on ``tables`` (roles, loading a labels table); knows nothing of models or storage.
"""
