"""Tables in: loading files, proposing column roles, cleaning, joining sources and profiling.

Depends only on the ground (``errors``, ``_messages``, ``privacy``, ``workspace``); no models.
"""
