"""Nonlinear bottleneck family: `depth-rank`, `bottleneck-structure`, `feature-sparsity`,
`leaky-resnet` (docs/results.md)."""
