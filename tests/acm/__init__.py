"""Test helpers of the ACM message layer (strategies, corpus generator)."""
