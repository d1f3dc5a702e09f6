"""A bank of G prediction heads with the same architecture, trained together as stacked tensors.

Each head is the kit's ``FullyConnectedPrediction``: ``hidden_layers`` x [Linear(cur, hidden_dim) ->
BatchNorm1d -> Dropout -> ReLU] -> Linear(cur, n_labels); no input normalisation. Weights use
``xavier_uniform_``/``xavier_normal_`` with ``gain = calculate_gain(previous activation)`` (linear for the
first layer, relu after a hidden layer); biases keep PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
``initialization="default"`` is ``nn.Linear``'s own init (used by the linear probe). Heads differ in their
learning rate, initialisation, dropout, weight decay and seed; each has its own Adam state (torch's Adam
formula, L2 weight decay as ``torch.optim.Adam``), BatchNorm statistics (batch statistics in training with
biased variance, running statistics with unbiased variance and momentum 0.1, eps 1e-5) and dropout masks.

Layout: the first weight is stored ``[in, G, out]`` so that a batch shared by every head is one GEMM
``x @ W.view(in, G*out)``; every other tensor is ``[G, ...]``. The model axis of each parameter is kept in
``axes`` so that selecting, snapshotting and restoring heads is one ``index_select``/``index_copy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
INITIALIZATIONS = ("xavier_uniform_", "xavier_normal_", "default")


@dataclass(frozen=True)
class HeadConfig:
    """One head's hyper-parameters (the kit's grid point, or the linear probe)."""

    hidden_layers: int = 1
    hidden_dim: int = 1024
    dropout: float = 0.1
    lr: float = 1e-3
    initialization: str = "xavier_uniform_"
    hidden_norm: str = "BatchNorm1d"  # or "Identity"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization {self.initialization!r} not in {INITIALIZATIONS}")
        if self.hidden_norm not in ("BatchNorm1d", "Identity"):
            raise ValueError(f"hidden_norm {self.hidden_norm!r} must be BatchNorm1d or Identity")

    @property
    def family(self) -> tuple[int, int, str]:
        """Heads of one family share tensor shapes and can share a bank."""
        return (self.hidden_layers, self.hidden_dim if self.hidden_layers else 0, self.hidden_norm)


def _init_linear(fan_in: int, fan_out: int, initialization: str, gain: float, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor]:
    """Weight [out, in] then bias [out], drawn in nn.Linear/nn.init order from ``generator`` (CPU)."""
    weight = torch.empty(fan_out, fan_in)
    if initialization == "xavier_uniform_":
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        weight.uniform_(-bound, bound, generator=generator)
    elif initialization == "xavier_normal_":
        weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
    else:  # nn.Linear's kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(fan_in)
        weight.uniform_(-bound, bound, generator=generator)
    bound = 1.0 / math.sqrt(fan_in)
    bias = torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
    return weight, bias


@dataclass
class HeadState:
    """One trained head, detached: per layer ``(weight [in, out], bias [out])`` and BatchNorm tensors."""

    config: HeadConfig
    weights: list[Tensor]
    biases: list[Tensor]
    norms: list[tuple[Tensor, Tensor, Tensor, Tensor]] = field(default_factory=list)  # gamma, beta, mean, var


class MLPBank:
    """G heads of one family on one device; ``forward`` gives logits [G, B, n_labels]."""

    def __init__(self, states: Sequence[HeadState], device: str | torch.device = "cpu") -> None:
        if not states:
            raise ValueError("a bank needs at least one head")
        families = {state.config.family for state in states}
        if len(families) != 1:
            raise ValueError(f"heads of different architectures cannot share a bank: {sorted(families)}")
        self.configs = [state.config for state in states]
        self.device = torch.device(device)
        n_layers = len(states[0].weights)
        self.params: list[Tensor] = []
        self.axes: list[int] = []
        for layer in range(n_layers):
            stack_axis = 1 if layer == 0 else 0
            self._add(torch.stack([s.weights[layer] for s in states], dim=stack_axis), stack_axis)
            self._add(torch.stack([s.biases[layer] for s in states]), 0)
            if layer < n_layers - 1 and self.configs[0].hidden_norm == "BatchNorm1d":
                self._add(torch.stack([s.norms[layer][0] for s in states]), 0)
                self._add(torch.stack([s.norms[layer][1] for s in states]), 0)
        self.running = [
            [torch.stack([s.norms[layer][k] for s in states]).to(self.device) for k in (2, 3)]
            for layer in range(n_layers - 1) if self.configs[0].hidden_norm == "BatchNorm1d"
        ]
        self.n_layers = n_layers
        self.lr = torch.tensor([c.lr for c in self.configs], device=self.device)
        self.weight_decay = torch.tensor([c.weight_decay for c in self.configs], device=self.device)
        self.dropout = torch.tensor([c.dropout for c in self.configs], device=self.device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.step = 0

    def _add(self, tensor: Tensor, axis: int) -> None:
        self.params.append(tensor.to(self.device).contiguous().requires_grad_(True))
        self.axes.append(axis)

    @property
    def size(self) -> int:
        return len(self.configs)

    @staticmethod
    def init_state(config: HeadConfig, in_dim: int, n_out: int, seed: int) -> HeadState:
        """A freshly initialised head; the same (config, dims, seed) always gives the same tensors."""
        generator = torch.Generator().manual_seed(seed)
        weights, biases, norms = [], [], []
        current, activation_gain = in_dim, 1.0  # calculate_gain("linear")
        for _ in range(config.hidden_layers):
            weight, bias = _init_linear(current, config.hidden_dim, config.initialization, activation_gain, generator)
            weights.append(weight.t().contiguous())
            biases.append(bias)
            ones, zeros = torch.ones(config.hidden_dim), torch.zeros(config.hidden_dim)
            norms.append((ones, zeros, zeros.clone(), ones.clone()))
            current, activation_gain = config.hidden_dim, math.sqrt(2.0)  # calculate_gain("relu")
        weight, bias = _init_linear(current, n_out, config.initialization, activation_gain, generator)
        weights.append(weight.t().contiguous())
        biases.append(bias)
        if config.hidden_norm != "BatchNorm1d":
            norms = []
        return HeadState(config, weights, biases, norms)

    # ------------------------------------------------------------------------------------------ forward

    def _layer_params(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        per_layer = 4 if self.running else 2
        base = layer * per_layer
        weight, bias = self.params[base], self.params[base + 1]
        if self.running and layer < self.n_layers - 1:
            return weight, bias, self.params[base + 2], self.params[base + 3]
        return weight, bias, None, None

    def forward(self, x: Tensor, train: bool, generator: torch.Generator | None = None) -> Tensor:
        """Logits [G, B, C] for a batch shared by all heads ([B, D]) or one batch per head ([G, B, D])."""
        g = self.size
        h = x
        for layer in range(self.n_layers):
            weight, bias, gamma, beta = self._layer_params(layer)
            if layer == 0 and x.dim() == 2:
                in_dim, _, out_dim = weight.shape
                h = (h @ weight.view(in_dim, g * out_dim)).view(-1, g, out_dim).transpose(0, 1)
            elif layer == 0:
                h = torch.stack([h[k] @ weight[:, k, :] for k in range(g)])
            else:
                h = torch.bmm(h, weight)
            h = h + bias[:, None, :]
            if layer == self.n_layers - 1:
                return h
            if gamma is not None:
                h = self._batch_norm(h, layer, gamma, beta, train)
            if train:
                keep = 1.0 - self.dropout[:, None, None]
                mask = (torch.rand(h.shape, generator=generator, device=h.device) < keep).to(h.dtype)
                h = h * mask / keep
            h = torch.relu(h)
        return h

    def _batch_norm(self, h: Tensor, layer: int, gamma: Tensor, beta: Tensor, train: bool) -> Tensor:
        running_mean, running_var = self.running[layer]
        if train:
            n = h.shape[1]
            var, mean = torch.var_mean(h, dim=1, unbiased=False)
            with torch.no_grad():
                running_mean.mul_(1 - BN_MOMENTUM).add_(mean.detach(), alpha=BN_MOMENTUM)
                running_var.mul_(1 - BN_MOMENTUM).add_(var.detach() * (n / max(n - 1, 1)), alpha=BN_MOMENTUM)
        else:
            mean, var = running_mean, running_var
        return (h - mean[:, None, :]) * torch.rsqrt(var[:, None, :] + BN_EPS) * gamma[:, None, :] + beta[:, None, :]

    # ------------------------------------------------------------------------------------------ training

    def loss(self, logits: Tensor, targets: Tensor, multilabel: bool) -> Tensor:
        """Sum over heads of each head's mean loss (CE on class indices, or BCE-with-logits)."""
        g, b, c = logits.shape
        if multilabel:
            targets = targets.expand(g, b, c) if targets.dim() == 2 else targets
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / (b * c)
        targets = targets.expand(g, b) if targets.dim() == 1 else targets
        return F.cross_entropy(logits.reshape(g * b, c), targets.reshape(g * b), reduction="sum") / b

    def _per_head(self, values: Tensor, index: int) -> Tensor:
        shape = [1] * self.params[index].dim()
        shape[self.axes[index]] = self.size
        return values.view(shape)

    @torch.no_grad()
    def adam_step(self) -> None:
        """One ``torch.optim.Adam`` step per head, each with its own lr and weight decay."""
        self.step += 1
        beta1, beta2 = ADAM_BETAS
        bias_correction1 = 1 - beta1**self.step
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.step)
        for index, param in enumerate(self.params):
            grad = param.grad
            if bool((self.weight_decay != 0).any()):
                grad = grad + self._per_head(self.weight_decay, index) * param
            self.exp_avg[index].lerp_(grad, 1 - beta1)
            self.exp_avg_sq[index].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq[index].sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
            step_size = self._per_head(self.lr, index) / bias_correction1
            param.sub_(step_size * (self.exp_avg[index] / denom))
            param.grad = None

    # ------------------------------------------------------------------------------------------ heads

    def export(self, head: int) -> HeadState:
        """A detached copy of one head."""
        weights, biases, norms = [], [], []
        for layer in range(self.n_layers):
            weight, bias, gamma, beta = self._layer_params(layer)
            weights.append((weight[:, head] if layer == 0 else weight[head]).detach().clone())
            biases.append(bias[head].detach().clone())
            if gamma is not None:
                mean, var = self.running[layer]
                norms.append((gamma[head].detach().clone(), beta[head].detach().clone(),
                              mean[head].clone(), var[head].clone()))
        return HeadState(self.configs[head], weights, biases, norms)

    def keep(self, heads: Sequence[int]) -> None:
        """Drop every head not listed (stopped heads stop costing compute)."""
        index = torch.tensor(list(heads), device=self.device, dtype=torch.long)
        with torch.no_grad():
            for i, axis in enumerate(self.axes):
                self.params[i] = self.params[i].index_select(axis, index).contiguous().requires_grad_(True)
                self.exp_avg[i] = self.exp_avg[i].index_select(axis, index).contiguous()
                self.exp_avg_sq[i] = self.exp_avg_sq[i].index_select(axis, index).contiguous()
            self.running = [[t.index_select(0, index).contiguous() for t in pair] for pair in self.running]
        self.lr, self.weight_decay, self.dropout = (t.index_select(0, index)
                                                    for t in (self.lr, self.weight_decay, self.dropout))
        self.configs = [self.configs[h] for h in heads]


@torch.no_grad()
def predict_bank(bank: MLPBank, x: Tensor, multilabel: bool, chunk: int = 16384) -> tuple[Tensor, Tensor]:
    """Eval-mode ``(probabilities, logits)`` [G, N, C] of every head of a bank on rows ``x`` [N, D]."""
    logits = torch.cat([bank.forward(x[i:i + chunk], train=False) for i in range(0, x.shape[0], chunk)], dim=1)
    probabilities = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)
    return probabilities, logits


def predict(states: Sequence[HeadState], x: Tensor, multilabel: bool) -> tuple[Tensor, Tensor]:
    """Eval-mode ``(probabilities, logits)`` [G, N, C] of trained heads of one family on rows ``x``."""
    return predict_bank(MLPBank(states, device=x.device), x, multilabel)
