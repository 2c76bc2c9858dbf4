"""dismi: disentangled representations via mutual-information estimation (Sanchez et al., 2019).

The science lives here, free of CLI and file-layout knowledge: the Shapes3D contract and
renderer, the pair dataset, networks, losses and objectives, training loops, probes and plots.
"""
from dismi.errors import DismiError

__all__ = ["DismiError"]
