"""Building blocks of the EDM U-Nets (Karras et al. 2022, NVlabs ``edm`` ``training/networks.py``).

Written from the published architecture description and the measured facts in
``shared/edm-compat`` (module names, attributes, buffers, numerical conventions), so that the
official state dicts load strictly and reproduce the official outputs. The blocks keep EDM's
parameter and buffer names (``weight``, ``bias``, ``resample_filter``, ``freqs``) and its
plain attributes (``in_channels``, ``up``, ``num_groups`` ...), which is what a strict
``load_state_dict`` and a pickle importer rely on.

Dtype policy: every layer casts its weights to the dtype of its input. A float64 input thus
gives a true float64 evaluation (also of the attention softmax), a float32 input EDM's float32
path, and under ``torch.autocast`` the autocast rules decide. Nothing is hard-wired to float32
except two places where EDM itself computes in float32 (the positional-embedding frequencies
and the attention logits of half-precision inputs), kept for compatibility with trained weights.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


def init_weight_tensor(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> torch.Tensor:
    """A freshly initialised tensor under one of EDM's four schemes (unit gain).

    Xavier targets the variance ``2/(fan_in + fan_out)``, Kaiming ``1/fan_in``; the uniform
    variants draw from the symmetric interval with that variance, the normal ones from a
    Gaussian. Layers multiply the result by their ``init_weight``/``init_bias`` gains.
    """
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (torch.rand(*shape) * 2 - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise ValueError(f"Unknown weight init mode {mode!r}; choose one of {', '.join(INIT_MODES)}.")


class Linear(torch.nn.Module):
    """Fully connected layer with EDM's initialisation knobs (``init_weight``/``init_bias`` gains)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = torch.nn.Parameter(init_weight_tensor([out_features, in_features], **fans) * init_weight)
        self.bias = torch.nn.Parameter(init_weight_tensor([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def resample_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel ``outer(f, f) / sum(f)²`` as a ``[1, 1, k, k]`` float32 tensor.

    Normalised to unit sum so that down-sampling averages and (times 4) up-sampling
    interpolates, as in StyleGAN2/NCSN++ (filter ``[1, 1]`` is box, ``[1, 3, 3, 1]`` bilinear).
    """
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square()).reshape(1, 1, len(taps), len(taps))


class Conv2d(torch.nn.Module):
    """2-D convolution with optional 2x up/down resampling through a fixed FIR filter.

    ``kernel=0`` gives a pure resampler (no weight or bias). The filter is the buffer
    ``resample_filter``; it exists only when the layer resamples. ``fused_resample`` convolves
    and resamples in one padded pass (NCSN++'s ``aux_residual`` layers), which changes the
    border handling, so it must match the trained network.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[float] = (1, 1),
        fused_resample: bool = False,
        init_mode: str = "kaiming_normal",
        init_weight: float = 1.0,
        init_bias: float = 0.0,
    ) -> None:
        if up and down:
            raise ValueError("A Conv2d layer can up-sample or down-sample, not both.")
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        self.fused_resample = fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        if kernel:
            shape = [out_channels, in_channels, kernel, kernel]
            self.weight = torch.nn.Parameter(init_weight_tensor(shape, **fans) * init_weight)
            self.bias = torch.nn.Parameter(init_weight_tensor([out_channels], **fans) * init_bias) if bias else None
        else:
            self.weight = None
            self.bias = None
        self.register_buffer("resample_filter", resample_kernel(resample_filter) if (up or down) else None)

    def _filter(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """The resampling kernel repeated per channel for a depthwise (grouped) convolution."""
        return self.resample_filter.to(x.dtype).expand(channels, 1, -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        w_pad = 0 if w is None else w.shape[-1] // 2
        f_pad = 0 if self.resample_filter is None else (self.resample_filter.shape[-1] - 1) // 2
        if not (self.up or self.down):
            return x if w is None else F.conv2d(x, w, b, padding=w_pad)
        fused = self.fused_resample and w is not None
        if self.up:
            # Transposed depthwise filter; the factor 4 keeps the mean after inserting zeros.
            pad = max(f_pad - w_pad, 0) if fused else f_pad
            x = F.conv_transpose2d(x, self._filter(x, self.in_channels) * 4, stride=2, padding=pad,
                                   groups=self.in_channels)
            if w is not None:
                x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0) if fused else w_pad)
        elif fused:
            # Convolve first with extra padding, then filter and decimate without padding.
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, self._filter(x, self.out_channels), stride=2, groups=self.out_channels)
        else:
            x = F.conv2d(x, self._filter(x, self.in_channels), stride=2, padding=f_pad, groups=self.in_channels)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if b is None else x + b.reshape(1, -1, 1, 1)


class GroupNorm(torch.nn.Module):
    """Group normalisation with ``min(num_groups, C // min_channels_per_group)`` groups.

    The cap keeps at least 4 channels per group, so narrow layers (and the tiny networks used
    for tests and small data sets) still normalise sensibly.
    """

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        if self.num_groups < 1:
            raise ValueError(f"GroupNorm needs at least {min_channels_per_group} channels, got {num_channels}.")
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class PositionalEmbedding(torch.nn.Module):
    """Transformer-style sinusoidal embedding of the noise level, output ``[cos | sin]``.

    Frequencies are ``max_positions^(-i/n)`` for ``i < n = num_channels/2``, or ``-i/(n-1)``
    with ``endpoint`` (DDPM++ uses ``endpoint=True``, ADM ``False``). They are computed once,
    in float32 on the CPU, and only then cast: that is what the trained networks saw, and a
    GPU's float32 ``pow`` rounds differently, which would move float64 results on a GPU by
    1e-7 (at VP's c_noise of several hundred). They are kept per device and dtype outside the
    state dict, which has no entry for this layer.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint
        half = num_channels // 2
        steps = torch.arange(half, dtype=torch.float32, device="cpu") / (half - int(endpoint))
        self._freqs = (1.0 / max_positions) ** steps  # explicit CPU: valid also when built on "meta"
        self._freqs_on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def frequencies(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The frequency vector on ``device`` in ``dtype`` (copied there once, bit for bit)."""
        key = (device, dtype)
        if key not in self._freqs_on:
            self._freqs_on[key] = self._freqs.to(device=device, dtype=dtype)
        return self._freqs_on[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(x, self.frequencies(x.device, x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class FourierEmbedding(torch.nn.Module):
    """Random Fourier features of the noise level (NCSN++), output ``[cos | sin]``.

    The frequencies ``freqs ~ N(0, scale²)`` are drawn once and stored as a buffer, so a
    trained network's values come from its file.
    """

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(x, 2 * math.pi * self.freqs.to(x.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over positions for ``q, k, v`` of shape ``[N, channels, positions]``.

    Logits are scaled by ``1/sqrt(channels)``. Half-precision inputs are attended in float32
    (EDM does the softmax in float32); float32 and float64 inputs keep their own precision,
    so a float64 run is float64 throughout. ``scaled_dot_product_attention`` picks a fused
    kernel on GPUs.
    """
    dtype = q.dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    q, k, v = (t.to(work).transpose(1, 2) for t in (q, k, v))
    with torch.autocast(q.device.type, enabled=False):
        out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).to(dtype)


class UNetBlock(torch.nn.Module):
    """Residual block of both U-Nets: GroupNorm-SiLU-conv, noise embedding, GroupNorm-SiLU-
    dropout-conv, a skip path, then optional multi-head self-attention.

    ``adaptive_scale`` (ADM) turns the embedding into a per-channel scale and shift of the
    second normalisation; otherwise (DDPM++/NCSN++) it is added before it. ``skip_scale``
    multiplies each residual sum (``sqrt(1/2)`` in DDPM++/NCSN++). The skip path is a
    (resampling) 1x1 conv when the shape changes; with ``resample_proj=False`` and equal channel
    counts it is a weightless resampler. Attention uses ``num_heads`` heads, or
    ``out_channels // channels_per_head`` when ``num_heads`` is None (none if that is 0).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: Optional[int] = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[float] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        init: Optional[dict] = None,
        init_zero: Optional[dict] = None,
        init_attn: Optional[dict] = None,
    ) -> None:
        super().__init__()
        init = {} if init is None else init
        init_zero = dict(init_weight=0) if init_zero is None else init_zero
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.emb_channels = emb_channels
        if not attention:
            self.num_heads = 0
        else:
            self.num_heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.adaptive_scale = adaptive_scale

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, kernel=3, up=up, down=down,
                            resample_filter=resample_filter, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if (resample_proj or out_channels != in_channels) else 0
            self.skip = Conv2d(in_channels, out_channels, kernel=kernel, up=up, down=down,
                               resample_filter=resample_filter, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, kernel=1, **(init if init_attn is None else init_attn))
            self.proj = Conv2d(out_channels, out_channels, kernel=1, **init_zero)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skip(x)
        h = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(h.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + shortcut) * self.skip_scale
        if self.num_heads:
            x = (self._attend(x) + x) * self.skip_scale
        return x

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over the pixels; ``qkv`` rows are grouped head, then channel, then q/k/v."""
        b, c = x.shape[:2]
        qkv = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, -1)
        q, k, v = qkv.unbind(2)
        return self.proj(attention(q, k, v).reshape(x.shape))


def drop_labels(labels: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole label vectors with probability ``p`` while training (classifier-free guidance)."""
    if not (training and p):
        return labels
    keep = torch.rand([labels.shape[0], 1], device=labels.device) >= p
    return labels * keep.to(labels.dtype)


class UNetBase(torch.nn.Module):
    """Bookkeeping both U-Nets share: the settings that rebuild them, and the class-label input."""

    def keep_settings(self, settings: dict[str, Any]) -> None:
        """Record the constructor's arguments (its ``locals()``) as JSON-ready ``arch_kwargs``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        self.arch_kwargs = {k: list(settings[k]) if isinstance(settings[k], (list, tuple)) else settings[k]
                            for k in names}
        for key in ("img_resolution", "in_channels", "out_channels", "label_dim", "label_dropout"):
            setattr(self, key, settings[key])

    def class_input(self, class_labels: Optional[torch.Tensor]) -> torch.Tensor:
        """Labels as the label mapping takes them (with label dropout while training)."""
        if class_labels is None:
            raise ValueError(f"This network is class-conditional ({self.label_dim} classes): pass labels.")
        return drop_labels(class_labels, self.label_dropout, self.training)
