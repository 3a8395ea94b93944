"""gelora: geometric adaptive LoRA ranks (GeLoRA, arXiv 2412.09250).

The library estimates the intrinsic dimension of every layer's hidden states, turns the dimension
profile into per-layer LoRA ranks with the rule ``r_i = max(d_{i+1} - d_i, 0) + offset`` and emits a
standard ``peft.LoraConfig``. Heavy submodules (torch, transformers) are imported lazily.
"""

from gelora._version import __version__
from gelora.errors import GeLoRAError

__all__ = ["GeLoRAError", "__version__"]
