"""Tables in: loading files, proposing column roles, cleaning, joining sources and profiling;
``partitioned`` does loading, profiling and cleaning of tables too large for one process.

Depends only on the ground (``errors``, ``_messages``, ``privacy``, ``workspace``, ``compute``);
no models.
"""
