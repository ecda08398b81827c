"""A model whose parameters, gradients and BatchNorm statistics live in flat float32 buffers.

The update rules see one flat vector; this adapter lets a ``torch.nn.Module`` compute at such a vector
without per-layer copies: every parameter is a view into a flat vector and its ``.grad`` a view into one flat
gradient buffer. Computing at a point makes the parameters views of the point itself (no copy; a point
from another device is copied once into the model's own buffer), and reading the gradient is one pass.

BatchNorm (a choice the paper does not spell out): the master keeps ONE set of running statistics. A worker
computes its batch's statistics in training mode (with the layers' momentum set to 1, so after the forward
pass the running buffers hold exactly the batch mean and unbiased variance); the master folds them into its
running statistics when it applies that gradient, ``r <- (1 - μ) r + μ b`` with the model's own μ (0.1).
With one worker this is what a plain PyTorch loop does; evaluation uses the master's parameters and
statistics in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class FlatModel:
    def __init__(
        self, module: nn.Module, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        """``dtype``: of the flat buffers and the module (float32 in training; tests use float64)."""
        self.module = module.to(device=device, dtype=dtype)
        self.device = torch.device(device)
        params = list(self.module.parameters())
        #: the model's own parameter buffer: the initial parameters, then where points from another device
        #: or dtype are copied (``load_point``)
        self.params = torch.cat([p.detach().reshape(-1) for p in params])
        self.grads = torch.zeros_like(self.params)
        _alias(params, self.params, self.grads)
        self._param_tensors = params
        self._computing_at = self.params  # the flat vector the parameters are views of now

        norms = [m for m in self.module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        momenta = {m.momentum for m in norms}
        numeric = {value for value in momenta if value is not None}
        if len(momenta) > 1 or len(numeric) < len(momenta):
            raise ValueError(
                f"model: every BatchNorm layer needs the same numeric momentum, got {sorted(map(str, momenta))}"
            )
        self.bn_momentum: float = numeric.pop() if numeric else 0.0
        buffers = [b for m in norms for b in (m.running_mean, m.running_var) if b is not None]
        self.bn_stats = torch.cat([b.reshape(-1) for b in buffers]) if buffers else self.params.new_zeros(0)
        _alias(buffers, self.bn_stats)
        for m in norms:
            m.momentum = 1.0  # after a forward pass in train mode the buffers hold the batch's own statistics
        # for gradients(): the same tensors by name, in the flat buffers' order
        self._param_names = [name for name, _ in self.module.named_parameters()]
        self._param_shapes = [p.shape for _, p in self.module.named_parameters()]
        by_module = {m: name for name, m in self.module.named_modules()}
        self._stat_names = [f"{by_module[m]}.{key}" for m in norms for key in ("running_mean", "running_var")]

    @property
    def num_params(self) -> int:
        return self.params.numel()

    def initial_state(self) -> tuple[Tensor, Tensor]:
        """Copies of the module's initial parameters and BatchNorm statistics."""
        return self.params.clone(), self.bn_stats.clone()

    def load_point(self, point: Tensor) -> Tensor:
        """Make the module compute at ``point`` and return the flat vector it now computes at.

        A contiguous point on the model's device with its dtype is used in place: the parameters become views
        of it, and no d floats are copied (the module only reads its parameters; the caller must not write
        the point while the model computes at it). Any other point is copied into ``self.params``."""
        if (
            point.device != self.params.device
            or point.dtype != self.params.dtype
            or not point.is_contiguous()
            or point.shape != self.params.shape
        ):
            point = self.params.copy_(point)
        if point is not self._computing_at:
            _alias(self._param_tensors, point)
            self._computing_at = point
        return point

    def gradient(self, point: Tensor, x: Tensor, y: Tensor, weight_decay: float) -> tuple[Tensor, Tensor, float]:
        """At ``point``: ``(∇L + λ·point, the batch's BatchNorm statistics, L)``; L is the mean cross-entropy."""
        point = self.load_point(point)
        self.grads.zero_()
        self.module.train()
        loss = F.cross_entropy(self.module(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True))
        loss.backward()
        grad = self.grads.add(point, alpha=weight_decay) if weight_decay else self.grads.clone()
        return grad, self.bn_stats.clone(), float(loss.detach())

    def gradients(self, points: Tensor, x: Tensor, y: Tensor, weight_decay: float) -> tuple[Tensor, Tensor, Tensor]:
        """``gradient`` for B points at once, each with its own batch, computed together with
        ``torch.func.vmap`` over ``functional_call`` (one batched forward and backward instead of B):
        ``points`` [B, d], ``x`` [B, b, ...], ``y`` [B, b] -> (grads [B, d], BatchNorm statistics [B, s],
        losses [B]). Each point gets its own BatchNorm buffers, so its batch statistics are its own; the
        numbers equal B calls of ``gradient`` up to float rounding (kernels may sum in another order)."""
        from torch.func import functional_call, grad_and_value, vmap

        count = points.shape[0]
        buffers = {name: b.unsqueeze(0).expand(count, *b.shape).clone() for name, b in self.module.named_buffers()}

        def loss_and_stats(params: dict, bufs: dict, xb: Tensor, yb: Tensor):
            loss = F.cross_entropy(functional_call(self.module, (params, bufs), (xb,)), yb)
            stats = torch.cat([bufs[n].reshape(-1) for n in self._stat_names]) if self._stat_names else xb.new_zeros(0)
            return loss, stats

        def one(point: Tensor, bufs: dict, xb: Tensor, yb: Tensor):
            params = dict(zip(self._param_names, _views(point, self._param_shapes)))
            grads, (loss, stats) = grad_and_value(loss_and_stats, has_aux=True)(params, bufs, xb, yb)
            return torch.cat([grads[n].reshape(-1) for n in self._param_names]), stats, loss

        self.module.train()
        points = points.to(self.device)
        grads, stats, losses = vmap(one, randomness="different")(
            points, buffers, x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        )
        if weight_decay:
            grads.add_(points, alpha=weight_decay)
        return grads, stats, losses.detach()

    @torch.no_grad()
    def evaluate(
        self, params: Tensor, bn_stats: Tensor, batches: Iterable[tuple[Tensor, Tensor]]
    ) -> tuple[float, float]:
        """``(error %, mean loss)`` of the model at ``params`` with BatchNorm statistics ``bn_stats``."""
        self.load_point(params)
        self.bn_stats.copy_(bn_stats)
        self.module.eval()
        wrong, loss, count = 0, 0.0, 0
        for x, y in batches:
            labels = y.to(self.device)
            logits = self.module(x.to(self.device))
            wrong += int((logits.argmax(1) != labels).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            count += len(y)
        return 100.0 * wrong / count, loss / count


def _views(flat: Tensor, shapes: list) -> list[Tensor]:
    """Consecutive views of ``flat`` with the given shapes."""
    out, offset = [], 0
    for shape in shapes:
        n = shape.numel()
        out.append(flat[offset : offset + n].view(shape))
        offset += n
    return out


def _alias(tensors: Sequence[Tensor], flat: Tensor, flat_grad: Tensor | None = None) -> None:
    """Make each tensor (and its grad) a view into ``flat`` (and ``flat_grad``), in order."""
    shapes = [t.shape for t in tensors]
    for t, view in zip(tensors, _views(flat, shapes)):
        t.data = view
    if flat_grad is not None:
        for t, view in zip(tensors, _views(flat_grad, shapes)):
            t.grad = view
