"""A stacked ensemble of E copies of ANY same-shaped ``nn.Module``, through :mod:`torch.func`.

``StackedModule.from_modules([m_1, …, m_E])`` stacks every parameter (and buffer) of the
members into one tensor with a leading dimension E (``torch.func.stack_module_state``), and
runs the members' own ``forward`` on them at once (``torch.func.functional_call`` under
``torch.vmap``). It has ``size = E`` and only (E, ...) parameters, so
:func:`rankscope.train.train` trains it as an ensemble: per-member lr / l2, the active mask,
``BatchedGD`` / ``BatchedAdam``, per-member batches. Parameters are registered under the
member's names with ``.`` written as ``/`` (``"0/weight"`` for ``net[0].weight``).

``forward(x)`` takes a shared input of ``sample_ndim`` dims (default 2: (N, features)) or a
per-member input with one more leading dim E, and returns (E, N, ...). ``member(e)`` is an
independent module (a deep copy of the first member) holding member e's current weights.

Members whose forward mutates state or draws randomness cannot be vmapped faithfully
(BatchNorm updating running statistics, Dropout, in training mode): they are refused by name.

>>> torch.manual_seed(0) is not None
True
>>> nets = [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)) for _ in range(5)]
>>> ens = StackedModule.from_modules(nets)
>>> ens.size, [n for n, _ in ens.named_parameters()][:2]
(5, ['0/weight', '0/bias'])
>>> x = torch.randn(7, 3)
>>> tuple(ens(x).shape), torch.allclose(ens(x)[2], nets[2](x))
((5, 7, 2), True)
>>> torch.equal(ens.member(2)[0].weight, nets[2][0].weight)
True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

__all__ = ["StackedModule"]

# module types whose training-mode forward writes buffers or draws random numbers
_STATEFUL = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
_RANDOM = (nn.modules.dropout._DropoutNd,)


def _check_member(module: nn.Module, i: int) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"member {i} must be an nn.Module, got {type(module).__name__}")
    for name, sub in module.named_modules():
        where = f"member {i}'s submodule {name or '<root>'!r} ({type(sub).__name__})"
        if sub.training and isinstance(sub, _STATEFUL) and getattr(sub, "track_running_stats", 0):
            raise TypeError(
                f"{where} updates its running statistics in training mode, which a vmapped "
                "stack cannot do; call .eval() on it, or use track_running_stats=False"
            )
        if sub.training and isinstance(sub, _RANDOM) and sub.p > 0:
            raise TypeError(
                f"{where} draws random numbers in training mode, which a stacked ensemble "
                "cannot reproduce per member; call .eval() on it or set p=0"
            )


def _signature(module: nn.Module) -> list[tuple]:
    params = [(n, tuple(p.shape), p.dtype) for n, p in module.named_parameters()]
    buffers = [(n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()]
    return [type(module).__name__, *params, "buffers", *buffers]


class StackedModule(nn.Module):
    """E same-shaped copies of one module, parameters and buffers stacked as (E, ...)."""

    def __init__(self) -> None:
        raise TypeError("build a StackedModule with StackedModule.from_modules([m_1, ..., m_E])")

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], *, sample_ndim: int = 2) -> StackedModule:
        """Stack copies of ``modules`` (same type, same parameter names, shapes and dtypes)."""
        mods = list(modules)
        if not mods:
            raise ValueError("from_modules needs at least one module, got none")
        for i, m in enumerate(mods):
            _check_member(m, i)
        sig = _signature(mods[0])
        for i, m in enumerate(mods[1:], start=1):
            if _signature(m) != sig:
                raise ValueError(
                    f"member {i} differs in shape from member 0: {_signature(m)} vs {sig}"
                )
        if not isinstance(sample_ndim, int) or isinstance(sample_ndim, bool) or sample_ndim < 1:
            raise ValueError(f"sample_ndim must be an int >= 1, got {sample_ndim!r}")
        if not any(True for _ in mods[0].parameters()):
            raise ValueError(f"{type(mods[0]).__name__} has no parameters to stack")
        params, buffers = stack_module_state(mods)
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.sample_ndim = sample_ndim
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for name, p in params.items():  # detached clones: the members are left untouched
            self.register_parameter(name.replace(".", "/"), nn.Parameter(p.detach().clone()))
        for name, b in buffers.items():
            self.register_buffer(name.replace(".", "/"), b.detach().clone())
        # the module whose code runs, weights on "meta": not registered, holds no memory
        object.__setattr__(self, "_template", copy.deepcopy(mods[0]).to("meta"))
        return self

    @property
    def size(self) -> int:
        return getattr(self, self._param_names[0].replace(".", "/")).shape[0]

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: getattr(self, n.replace(".", "/")) for n in self._param_names}
        buffers = {n: getattr(self, n.replace(".", "/")) for n in self._buffer_names}
        return params, buffers

    def forward(self, x: torch.Tensor, *, per_member: bool | None = None) -> torch.Tensor:
        """Shared x (``sample_ndim`` dims) or per-member x (E, ...) -> (E, N, ...).

        ``per_member`` overrides the choice made from ``x.ndim``.
        """
        if per_member is None:
            if x.ndim not in (self.sample_ndim, self.sample_ndim + 1):
                raise ValueError(
                    f"input must have {self.sample_ndim} dims (shared) or "
                    f"{self.sample_ndim + 1} (per member, leading {self.size}), got shape "
                    f"{tuple(x.shape)}"
                )
            per_member = x.ndim == self.sample_ndim + 1
        if per_member and x.shape[0] != self.size:
            raise ValueError(
                f"a per-member input must lead with the ensemble size {self.size}, got shape "
                f"{tuple(x.shape)}"
            )
        template = self._template

        def one(params, buffers, xe):
            return functional_call(template, (params, buffers), (xe,))

        params, buffers = self._state()
        return torch.vmap(one, in_dims=(0, 0, 0 if per_member else None))(params, buffers, x)

    def member(self, e: int) -> nn.Module:
        """An independent module (type of the members) holding member e's current values."""
        if not isinstance(e, int) or not -self.size <= e < self.size:
            raise IndexError(f"member index must be an int in [0, {self.size}), got {e!r}")
        params, buffers = self._state()
        device = next(iter(params.values())).device
        net = copy.deepcopy(self._template).to_empty(device=device)
        with torch.no_grad():
            for name, t in (*net.named_parameters(), *net.named_buffers()):
                t.copy_((params | buffers)[name][e])
        return net

    def train(self, mode: bool = True) -> StackedModule:
        """Set the training mode of the stack and of the members' code (checked again)."""
        if mode:
            _check_member(copy.deepcopy(self._template).train(), 0)
        self._template.train(mode)
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"size={self.size}, member={type(self._template).__name__}"
