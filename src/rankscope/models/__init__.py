"""rankscope.models: the networks and factorizations the experiments train."""

from rankscope.models.autoencoder import autoencoder, bottleneck_layer
from rankscope.models.cnn import SmallCNN
from rankscope.models.cp import CPFactorization
from rankscope.models.ensembles import DeepLinearEnsemble, MLPEnsemble
from rankscope.models.gnn import DenseGCN, ProductGNN, normalized_adjacency
from rankscope.models.ht import HTFactorization
from rankscope.models.leaky_resnet import LeakyResNet, adaptive_steps, check_steps, step_sizes
from rankscope.models.linear import DeepLinear, balanced_factors, balancedness, end_to_end
from rankscope.models.mlp import MLP
from rankscope.models.stacked import StackedModule

__all__ = [
    "MLP",
    "CPFactorization",
    "DeepLinear",
    "DeepLinearEnsemble",
    "DenseGCN",
    "HTFactorization",
    "LeakyResNet",
    "MLPEnsemble",
    "ProductGNN",
    "SmallCNN",
    "StackedModule",
    "adaptive_steps",
    "autoencoder",
    "balanced_factors",
    "balancedness",
    "bottleneck_layer",
    "check_steps",
    "end_to_end",
    "normalized_adjacency",
    "step_sizes",
]
