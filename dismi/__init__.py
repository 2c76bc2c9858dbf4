"""dismi: disentangled representations via mutual-information estimation (Sanchez et al., 2019).

The science lives here, free of CLI and file-layout knowledge, in layers whose imports only go down
(tests/test_layers.py): eval and train, then model and synthetic, then data, then util.
"""

from dismi.util.errors import DismiError

__all__ = ["DismiError"]
