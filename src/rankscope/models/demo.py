"""The shipped demo model: a small ReLU MLP trained for about a second on synthetic data.

``rankscope analyze --demo`` builds it, so the analysis runs on a fresh install with no
download and no scikit-learn. The data: x ~ N(0, I_d) and a label set by a rank-
``latent_rank`` teacher, y = argmax(x P Q) with P (d, r) and Q (r, K), so only r directions
of the input matter. Trained with weight decay, the hidden weights and representations
become visibly low-rank, which is what the per-layer table and the spectra figure show.

The files carry their own description: the safetensors metadata holds
``rankscope_model='demo-mlp'`` and the config as JSON, so :func:`load_demo_model` can rebuild
the architecture without running any code from the file.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "DEMO_TAG",
    "DemoConfig",
    "build_demo_model",
    "demo_data",
    "load_demo_model",
    "save_demo",
    "train_demo_model",
]

DEMO_TAG = "demo-mlp"


@dataclass(frozen=True)
class DemoConfig:
    in_dim: int = 32
    width: int = 64
    depth: int = 4  # hidden layers
    n_classes: int = 4
    latent_rank: int = 2
    n_samples: int = 512
    steps: int = 300
    lr: float = 5e-3
    weight_decay: float = 1e-2  # λ in the loss term λ·Σ‖W‖_F² (definitions §0)


def build_demo_model(
    config: DemoConfig, *, generator: torch.Generator | None = None
) -> nn.Sequential:
    """in_dim -> width (×depth, ReLU) -> n_classes; He-normal init drawn from ``generator``."""
    dims = [config.in_dim, *([config.width] * config.depth), config.n_classes]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    if generator is not None:
        with torch.no_grad():
            for mod in model:
                if isinstance(mod, nn.Linear):
                    fan_in = mod.weight.shape[1]
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=generator))
                    mod.weight.mul_(math.sqrt(2.0 / fan_in))
                    mod.bias.zero_()
    return model


def demo_data(
    config: DemoConfig, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, in_dim) float32 and y (N,) int64 from a rank-``latent_rank`` teacher."""
    x = torch.randn(config.n_samples, config.in_dim, generator=generator)
    p = torch.randn(config.in_dim, config.latent_rank, generator=generator)
    q = torch.randn(config.latent_rank, config.n_classes, generator=generator)
    y = (x @ p @ q).argmax(dim=1)
    return x, y


def train_demo_model(
    config: DemoConfig | None = None, *, generator: torch.Generator
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """(trained model, x, y): full-batch Adam on cross-entropy + λ·Σ‖W‖_F², in eval mode."""
    config = config or DemoConfig()
    x, y = demo_data(config, generator=generator)
    model = build_demo_model(config, generator=generator)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    for _ in range(config.steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss = loss + config.weight_decay * sum((w**2).sum() for w in weights)
        loss.backward()
        opt.step()
    return model.eval(), x, y


def save_demo(
    directory: str | Path, config: DemoConfig | None = None, *, seed: int = 0
) -> tuple[Path, Path]:
    """Train the demo and write ``demo_model.safetensors`` and ``demo_data.safetensors``."""
    from safetensors.torch import save_file

    config = config or DemoConfig()
    model, x, y = train_demo_model(config, generator=torch.Generator().manual_seed(seed))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"rankscope_model": DEMO_TAG, "config": json.dumps(asdict(config)), "seed": str(seed)}
    model_path, data_path = (
        directory / "demo_model.safetensors",
        directory / "demo_data.safetensors",
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(model_path), metadata=meta)
    save_file({"x": x.contiguous(), "y": y.contiguous()}, str(data_path), metadata=meta)
    return model_path, data_path


def load_demo_model(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> nn.Sequential:
    """Rebuild the demo MLP from a checkpoint's tensors and safetensors metadata."""
    if metadata.get("rankscope_model") != DEMO_TAG:
        raise ValueError(
            f"not a rankscope demo checkpoint: metadata rankscope_model="
            f"{metadata.get('rankscope_model')!r}, expected {DEMO_TAG!r}"
        )
    config = DemoConfig(**json.loads(metadata["config"]))
    model = build_demo_model(config)
    model.load_state_dict(tensors)
    return model.eval()
