"""rankscope.models"""

from rankscope.models.linear import DeepLinear, balanced_factors, balancedness, end_to_end
from rankscope.models.mlp import MLP

__all__ = ["MLP", "DeepLinear", "balanced_factors", "balancedness", "end_to_end"]
