"""rankscope.models: the networks and factorizations the experiments train."""

from rankscope.models.cnn import SmallCNN
from rankscope.models.cp import CPFactorization
from rankscope.models.ensembles import DeepLinearEnsemble, MLPEnsemble
from rankscope.models.gnn import DenseGCN, ProductGNN, normalized_adjacency
from rankscope.models.ht import HTFactorization
from rankscope.models.linear import DeepLinear, balanced_factors, balancedness, end_to_end
from rankscope.models.mlp import MLP

__all__ = [
    "MLP",
    "CPFactorization",
    "DeepLinear",
    "DeepLinearEnsemble",
    "DenseGCN",
    "HTFactorization",
    "MLPEnsemble",
    "ProductGNN",
    "SmallCNN",
    "balanced_factors",
    "balancedness",
    "end_to_end",
    "normalized_adjacency",
]
