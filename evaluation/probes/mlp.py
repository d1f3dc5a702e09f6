"""A bank of G prediction heads with the same architecture, trained together as stacked tensors.

Each head is the kit's ``FullyConnectedPrediction``: ``hidden_layers`` x [Linear(cur, hidden_dim) ->
BatchNorm1d -> Dropout -> ReLU] -> Linear(cur, n_labels); no input normalisation. Weights use
``xavier_uniform_``/``xavier_normal_`` with ``gain = calculate_gain(previous activation)`` (linear for the
first layer, relu after a hidden layer); biases keep PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
``initialization="default"`` is ``nn.Linear``'s own init (used by the linear probe). Heads differ in their
learning rate, initialisation, dropout, weight decay and seed; each has its own Adam state (torch's Adam
formula, L2 weight decay as ``torch.optim.Adam``), BatchNorm statistics (batch statistics in training with
biased variance, running statistics with unbiased variance and momentum 0.1, eps 1e-5) and dropout masks.

Layout: every tensor is ``[G, ...]`` with each head's slice contiguous, so that Adam runs as
``torch._fused_adam_`` (one pass over memory) on per-head views, one call per distinct (lr, weight decay).
The first weight is stored ``[G, out, in]`` (``nn.Linear``'s layout per head): a batch shared by every head
is one GEMM ``x @ W.view(G*out, in).T`` and its weight gradient one GEMM ``dZ.T @ x`` in that layout.
Hidden activations are kept ``[B, G*H]`` so that BatchNorm is PyTorch's native ``batch_norm`` over G*H
channels; later weights are ``[G, in, out]``, one GEMM per head on its column block of the activations.

Dropout: heads of a bank share one uniform draw per (row, unit), thresholded at each head's own keep
probability, so every head still sees independent Bernoulli masks across steps with its own rate (as heads of
a bank already share their batch order); drawing once instead of G times is a large part of a step's cost.

Precision: ``"fp32"`` computes everything in float32. ``"bf16"`` runs the GEMMs (forward and backward) in
bfloat16 (weights cast once per step, inputs given in bfloat16) and keeps float32 master weights, Adam state,
BatchNorm statistics, activations between GEMMs and the loss; on CPUs with AMX this is ~3x faster per GEMM.
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
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def compute_dtype(precision: str) -> torch.dtype:
    """The GEMM dtype of a probe precision name (``"fp32"`` or ``"bf16"``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"probe precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


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


def _columns(tensor: Tensor, head: int, width: int) -> Tensor:
    """Head ``head``'s block of ``width`` columns of a heads-side-by-side matrix [B, G*width] (a strided view)."""
    return tensor[:, head * width:(head + 1) * width]


def _output_block(tensor: Tensor, head: int, width: int, side_by_side: bool) -> Tensor:
    """Head ``head``'s block of a layer output: columns of [B, G*width], or the slice of [G, B, width]."""
    return _columns(tensor, head, width) if side_by_side else tensor[head]


class _FirstLinear(torch.autograd.Function):
    """``x @ W_g.T + b_g`` for every head g, GEMMs in ``dtype``; output float32 ``[B, G*out]``.

    ``x`` is ``[B, in]`` (one batch for all heads) or ``[G, B, in]`` (one per head), already in ``dtype``;
    ``weight`` is float32 ``[G, out, in]``. The weight gradient is computed directly in that layout; with one batch
    per head, one GEMM per head writes its column block of the output in place.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, dtype: torch.dtype) -> Tensor:  # type: ignore[override]
        g, out, in_dim = weight.shape
        w = weight.to(dtype)
        if x.dim() == 2:
            z = x @ w.view(g * out, in_dim).t()
        else:
            z = x.new_empty((x.shape[1], g * out))
            for head in range(g):
                torch.mm(x[head], w[head].t(), out=_columns(z, head, out))
        ctx.save_for_backward(x)
        ctx.dtype, ctx.shape = dtype, weight.shape
        return z.to(torch.float32).add_(bias.view(-1))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        g, out, in_dim = ctx.shape
        grad_c = grad.to(ctx.dtype)
        if x.dim() == 2:
            grad_w = (grad_c.t() @ x).view(g, out, in_dim)  # BLAS reads the transpose in place
        else:
            grad_w = x.new_empty((g, out, in_dim))
            for head in range(g):
                torch.mm(_columns(grad_c, head, out).t(), x[head], out=grad_w[head])
        return None, grad_w.to(torch.float32), grad.sum(0).view(g, out), None


class _HeadsLinear(torch.autograd.Function):
    """``a_g @ W_g + b_g`` per head, GEMMs in ``dtype``, from activations ``a`` float32 [B, G*in] (heads side by
    side). Output float32 ``[B, G*out]`` (``side_by_side=True``, a hidden layer) or ``[G, B, out]`` (logits).
    One GEMM per head on its column block, read and written in place (BLAS takes the row stride): no layout
    copies, and faster than ``bmm`` on copied [G, B, in] blocks (AMD EPYC, fp32: ~185 vs ~150 GFLOP/s).
    """

    @staticmethod
    def forward(ctx, a: Tensor, weight: Tensor, bias: Tensor, dtype: torch.dtype,  # type: ignore[override]
                side_by_side: bool) -> Tensor:
        g, in_dim, out = weight.shape
        rows = a.shape[0]
        a_c, w_c = a.to(dtype), weight.to(dtype)
        ctx.save_for_backward(a_c, w_c)
        ctx.dtype, ctx.side_by_side = dtype, side_by_side
        z = a.new_empty((rows, g * out) if side_by_side else (g, rows, out), dtype=dtype)
        for head in range(g):
            torch.mm(_columns(a_c, head, in_dim), w_c[head], out=_output_block(z, head, out, side_by_side))
        return z.to(torch.float32).add_(bias.view(-1) if side_by_side else bias[:, None, :])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:  # type: ignore[override]
        a_c, w_c = ctx.saved_tensors
        g, in_dim, out = w_c.shape
        grad_bias = grad.sum(0).view(g, out) if ctx.side_by_side else grad.sum(1)
        grad_c = grad.to(ctx.dtype)
        grad_a = torch.empty_like(a_c)
        grad_w = torch.empty_like(w_c)
        for head in range(g):
            grad_head = _output_block(grad_c, head, out, ctx.side_by_side)
            torch.mm(grad_head, w_c[head].t(), out=_columns(grad_a, head, in_dim))
            torch.mm(_columns(a_c, head, in_dim).t(), grad_head, out=grad_w[head])
        return grad_a.to(torch.float32), grad_w.to(torch.float32), grad_bias, None, None


@dataclass
class HeadState:
    """One trained head, detached: per layer ``(weight [in, out], bias [out])`` and BatchNorm tensors."""

    config: HeadConfig
    weights: list[Tensor]
    biases: list[Tensor]
    norms: list[tuple[Tensor, Tensor, Tensor, Tensor]] = field(default_factory=list)  # gamma, beta, mean, var


class MLPBank:
    """G heads of one family on one device; ``forward`` gives logits [G, B, n_labels]."""

    def __init__(self, states: Sequence[HeadState], device: str | torch.device = "cpu", precision: str = "fp32"
                 ) -> None:
        if not states:
            raise ValueError("a bank needs at least one head")
        families = {state.config.family for state in states}
        if len(families) != 1:
            raise ValueError(f"heads of different architectures cannot share a bank: {sorted(families)}")
        self.device = torch.device(device)
        self._set_configs([state.config for state in states])
        self.dtype = compute_dtype(precision)
        n_layers = len(states[0].weights)
        self.params: list[Tensor] = []
        for layer in range(n_layers):
            self._add(torch.stack([s.weights[layer].t() if layer == 0 else s.weights[layer] for s in states]))
            self._add(torch.stack([s.biases[layer] for s in states]))
            if layer < n_layers - 1 and self.configs[0].hidden_norm == "BatchNorm1d":
                self._add(torch.stack([s.norms[layer][0] for s in states]))
                self._add(torch.stack([s.norms[layer][1] for s in states]))
        self.running = [
            [torch.stack([s.norms[layer][k] for s in states]).to(self.device) for k in (2, 3)]
            for layer in range(n_layers - 1) if self.configs[0].hidden_norm == "BatchNorm1d"
        ]
        self.n_layers = n_layers
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.step = torch.zeros((), device=self.device)

    def _add(self, tensor: Tensor) -> None:
        self.params.append(tensor.to(self.device).contiguous().requires_grad_(True))

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

    def forward(self, x: Tensor, train: bool, generators: Sequence[torch.Generator] | None = None) -> Tensor:
        """Logits [G, B, C] for a batch shared by all heads ([B, D]) or one batch per head ([G, B, D]);
        ``generators``: one dropout stream per head (training)."""
        weight, bias, gamma, beta = self._layer_params(0)
        h = _FirstLinear.apply(x.to(self.dtype), weight, bias, self.dtype)  # [B, G*out], float32
        for layer in range(1, self.n_layers):
            h = self._activate(h, layer - 1, gamma, beta, train, generators)  # [B, G, H]
            weight, bias, gamma, beta = self._layer_params(layer)
            h = _HeadsLinear.apply(h.view(h.shape[0], -1), weight, bias, self.dtype, layer < self.n_layers - 1)
        return h if self.n_layers > 1 else h.view(h.shape[0], self.size, -1).transpose(0, 1)

    def _activate(self, h: Tensor, layer: int, gamma: Tensor | None, beta: Tensor | None, train: bool,
                  generators: Sequence[torch.Generator] | None) -> Tensor:
        """BatchNorm (if any) -> dropout (training) -> ReLU of [B, G*H]; returns [B, G, H]."""
        if gamma is not None and beta is not None:
            running_mean, running_var = self.running[layer]
            h = F.batch_norm(h, running_mean.view(-1), running_var.view(-1), gamma.view(-1), beta.view(-1),
                             training=train, momentum=BN_MOMENTUM, eps=BN_EPS)
        h = torch.relu(h).view(h.shape[0], self.size, -1)  # ReLU commutes with dropout's positive scaling
        if train and any(config.dropout > 0 for config in self.configs):
            h = h * self._dropout_scale(h.shape[0], h.shape[2], generators)
        return h

    def _dropout_scale(self, rows: int, units: int, generators: Sequence[torch.Generator] | None) -> Tensor:
        """Factors 0 or 1/keep, [B, G, H]: each head's uniform draws come from its own stream, so its masks do not
        depend on the other heads of the bank."""
        if generators is None or len(generators) != self.size:
            raise ValueError(f"dropout needs one generator per head ({self.size}), got "
                             f"{None if generators is None else len(generators)}")
        keep = self.keep_probability[None, :, None]
        uniform = torch.cat([torch.rand((rows, 1, units), generator=generator, device=self.device)
                             for generator in generators], dim=1)
        return (uniform < keep).to(torch.float32) / keep

    # ------------------------------------------------------------------------------------------ training

    def loss(self, logits: Tensor, targets: Tensor, multilabel: bool) -> Tensor:
        """Sum over heads of each head's mean loss (CE on class indices, or BCE-with-logits)."""
        g, b, c = logits.shape
        if multilabel:
            targets = targets.expand(g, b, c) if targets.dim() == 2 else targets
            return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / (b * c)
        targets = targets.expand(g, b) if targets.dim() == 1 else targets
        return F.cross_entropy(logits.reshape(g * b, c), targets.reshape(g * b), reduction="sum") / b

    @torch.no_grad()
    def adam_step(self) -> None:
        """One ``torch.optim.Adam`` step per head (L2 weight decay), fused; one call per run of adjacent heads
        with equal (lr, weight decay), on contiguous slices (``train_heads`` orders banks so that runs are long).
        """
        self.step += 1
        grads = [param.grad.contiguous() for param in self.params]
        for (lr, weight_decay), start, stop in self.optimizer_runs:
            def part(tensors: list[Tensor], start: int = start, stop: int = stop) -> list[Tensor]:
                return [tensor[start:stop] for tensor in tensors]
            params = part(self.params)
            torch._fused_adam_(params, part(grads), part(self.exp_avg), part(self.exp_avg_sq), [],
                               [self.step] * len(params), lr=lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                               weight_decay=weight_decay, eps=ADAM_EPS, amsgrad=False, maximize=False)
        for param in self.params:
            param.grad = None

    def _set_configs(self, configs: list[HeadConfig]) -> None:
        """The heads' configs and what follows from them: Adam runs and dropout keep probabilities."""
        self.configs = configs
        self.optimizer_runs = self._runs_of_equal_optimizer_settings(configs)
        keeps = [1.0 - config.dropout for config in configs]
        if len(set(keeps)) == 1:  # the kit's grid: one rate, broadcast over the heads
            keeps = keeps[:1]
        self.keep_probability = torch.tensor(keeps, device=self.device)

    @staticmethod
    def _runs_of_equal_optimizer_settings(configs: Sequence[HeadConfig]) -> list[tuple[tuple[float, float], int, int]]:
        """Maximal runs ``[start, stop)`` of adjacent heads sharing (lr, weight decay)."""
        runs: list[tuple[tuple[float, float], int, int]] = []
        for head, config in enumerate(configs):
            key = (config.lr, config.weight_decay)
            if runs and runs[-1][0] == key:
                runs[-1] = (key, runs[-1][1], head + 1)
            else:
                runs.append((key, head, head + 1))
        return runs

    # ------------------------------------------------------------------------------------------ heads

    def export(self, head: int) -> HeadState:
        """A detached copy of one head."""
        weights, biases, norms = [], [], []
        for layer in range(self.n_layers):
            weight, bias, gamma, beta = self._layer_params(layer)
            weights.append((weight[head].t().contiguous() if layer == 0 else weight[head].clone()).detach())
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
            for i in range(len(self.params)):
                self.params[i] = self.params[i].index_select(0, index).requires_grad_(True)
                self.exp_avg[i] = self.exp_avg[i].index_select(0, index)
                self.exp_avg_sq[i] = self.exp_avg_sq[i].index_select(0, index)
            self.running = [[t.index_select(0, index) for t in pair] for pair in self.running]
        self._set_configs([self.configs[h] for h in heads])


@torch.no_grad()
def predict_bank(bank: MLPBank, x: Tensor, multilabel: bool, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Eval-mode ``(probabilities, logits)`` [G, N, C] of every head of a bank on rows ``x`` [N, D], ``chunk`` rows
    at a time (activations of a few heads then stay in cache: 16384-row chunks ran at two thirds the speed)."""
    logits = torch.cat([bank.forward(x[i:i + chunk], train=False) for i in range(0, x.shape[0], chunk)], dim=1)
    probabilities = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)
    return probabilities, logits


def predict(states: Sequence[HeadState], x: Tensor, multilabel: bool, precision: str = "fp32"
            ) -> tuple[Tensor, Tensor]:
    """Eval-mode ``(probabilities, logits)`` [G, N, C] of trained heads of one family on rows ``x``, GEMMs in
    ``precision`` (the precision they were trained and validated in)."""
    return predict_bank(MLPBank(states, device=x.device, precision=precision), x, multilabel)
