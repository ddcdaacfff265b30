"""textkit: a few small string helpers."""
