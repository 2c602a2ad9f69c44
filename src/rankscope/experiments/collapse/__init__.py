"""The classification family: neural rank collapse, SGD + weight decay rank, rank diminishing.

Experiments ``neural-rank-collapse`` (arXiv 2402.03991), ``sgd-weight-decay-rank``
(arXiv 2206.05794) and ``rank-diminishing`` (arXiv 2206.06072); docs/results.md.
"""
