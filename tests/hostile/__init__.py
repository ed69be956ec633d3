"""A generated corpus of hostile and careless inputs, and the tests that run it (issue 12)."""
