"""Nonlinear bottleneck family: `depth-rank`, `bottleneck-structure`, `feature-sparsity`,
`leaky-resnet` (bottleneck.md)."""
