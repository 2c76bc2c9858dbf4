"""Thin DVC stage commands: each reads its params, calls dismi, and writes its artifacts."""

import os

# Set before torch loads GNU OpenMP, which reads it once. A run keeps the thread count it started with
# (dismi.util.devices), so beside another CPU-bound process one of its threads waits for a core at each
# parallel region's end: a short spin before sleeping keeps most of the speed alone and gives the core
# back quickly beside others (docs/performance.md, "Threads and the OpenMP wait policy").
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
