"""Thin DVC stage commands: each reads its params, calls dismi, and writes its artifacts."""
