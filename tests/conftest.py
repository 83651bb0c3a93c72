"""Test-wide settings."""

import torch

# The test models are tiny: intra-op threads only add contention on small CI machines.
torch.set_num_threads(1)
