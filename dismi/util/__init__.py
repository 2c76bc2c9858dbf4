"""The bottom layer: what every other layer may use. Errors with one-line messages, atomic files,
progress lines, source fingerprints, the device and CPU-thread policy, the memory allocator."""
