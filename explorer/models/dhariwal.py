"""Dhariwal & Nichol's ADM U-Net ("Diffusion Models Beat GANs"), in the form EDM trains it:
module names, order and numerics follow NVlabs ``edm`` so its checkpoints (ImageNet-64, and
iDDPM-style networks with a learned-variance half of the output) load strictly.

Differences from :class:`~explorer.models.songunet.SongUNet` that matter for compatibility:
the noise embedding keeps ``[cos | sin]`` and has no endpoint, class labels enter after the
second mapping layer through a bias-free projection, blocks use adaptive scale/shift with
``eps=1e-5``, attention has ``out_channels // 64`` heads, and the output comes from
``out_norm``/``out_conv``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from explorer.models.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBase, UNetBlock


class DhariwalUNet(UNetBase):
    """ADM U-Net ``F(x, noise_labels, class_labels, augment_labels=None)``.

    Args mirror EDM's ``DhariwalUNet``: ``img_resolution``, ``in_channels``, ``out_channels``,
    ``label_dim``, ``augment_dim``, ``model_channels``, ``channel_mult``, ``channel_mult_emb``,
    ``num_blocks``, ``attn_resolutions``, ``dropout``, ``label_dropout``.
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.keep_settings(locals())
        emb_channels = model_channels * channel_mult_emb
        gain = math.sqrt(1 / 3)
        init = dict(init_mode="kaiming_uniform", init_weight=gain, init_bias=gain)
        init_zero = dict(init_mode="kaiming_uniform", init_weight=0, init_bias=0)
        block = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout, init=init,
                     init_zero=init_zero)

        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False, **init_zero) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)
        # Unit-variance rows: a one-hot label picks one N(0, 1) embedding vector.
        self.map_label = (Linear(label_dim, emb_channels, bias=False, init_mode="kaiming_normal",
                                 init_weight=math.sqrt(label_dim)) if label_dim else None)

        self.enc = torch.nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, model_channels * mult, kernel=3, **init)
                cout = model_channels * mult
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions,
                                                                **block)
        skips = [m.out_channels for m in self.enc.values()]

        self.dec = torch.nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions,
                                                                **block)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, kernel=3, **init_zero)

    def embed(self, noise_labels: torch.Tensor, class_labels: Optional[torch.Tensor],
              augment_labels: Optional[torch.Tensor]) -> torch.Tensor:
        """The conditioning vector fed to every block."""
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None:
            emb = emb + self.map_label(self.class_input(class_labels))
        return F.silu(emb)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: Optional[torch.Tensor] = None,
                augment_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels)
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
