"""GS-LRM's transformer: pre-norm blocks of full self-attention over every token of every view, bias-free.

Speed notes (the 24-layer model attends over 24,578 tokens for 6 views of 512²; attention is ~80 % of the FLOPs):
one fused q/k/v Linear whose output is only viewed (never copied) into heads, PyTorch's fused attention kernels
with a choosable backend, and, in training with gradient checkpointing, optionally keeping each block's attention
output so the backward pass recomputes only the cheap Linears and norms, not the attention.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import (CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts,
                                    noop_context_fn)

AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]

_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
# "auto": the first that runs on the device and dtype, in this order (cuDNN is the fastest on an H100 for long
# sequences at head size 64; on CPU only flash and math exist)
_AUTO_ORDER = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
               SDPBackend.MATH]

# The attention kernels whose outputs `keep_attention` saves; the backward pass needs only these and q, k, v.
_ATTENTION_OPS = {torch.ops.aten._scaled_dot_product_cudnn_attention.default,
                  torch.ops.aten._scaled_dot_product_flash_attention.default,
                  torch.ops.aten._scaled_dot_product_efficient_attention.default,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default}


def attention_kernels(backend: AttentionBackend):
    """The context that restricts SDPA to the configured kernel(s); a named backend that cannot run raises."""
    if backend == "auto":
        return sdpa_kernel(_AUTO_ORDER, set_priority=True)
    return sdpa_kernel([_BACKENDS[backend]])


class SelfAttention(nn.Module):
    def __init__(self, d: int, d_head: int, backend: AttentionBackend):
        super().__init__()
        if d % d_head:
            raise ValueError(f"d={d} is not a multiple of d_head={d_head}")
        if backend != "auto" and backend not in _BACKENDS:
            raise ValueError(f"attention_backend {backend!r} is not one of auto, {', '.join(_BACKENDS)}")
        self.heads, self.d_head, self.backend = d // d_head, d_head, backend
        self.qkv = nn.Linear(d, 3 * d, bias=False)  # output: q | k | v, each d wide, heads contiguous inside
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # [B, N, d]
        b, n, d = x.shape
        # [B, N, 3, heads, d_head] -> three [B, heads, N, d_head] strided views (no copy)
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        with attention_kernels(self.backend):
            y = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, d_head]
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d, bias=False)
        self.act = nn.GELU()  # exact (erf) GELU, as the checkpoint was trained with
        self.fc2 = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, d: int, d_head: int, backend: AttentionBackend):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d, bias=False)
        self.mlp_norm = nn.LayerNorm(d, bias=False)
        self.attn = SelfAttention(d, d_head, backend)
        self.mlp = MLP(d)

    def forward(self, x: Tensor) -> Tensor:  # [B, N, d]
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


def _keep_attention_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _ATTENTION_OPS else CheckpointPolicy.PREFER_RECOMPUTE


class Transformer(nn.Module):
    """LayerNorm of the input tokens, then ``n_layer`` blocks."""

    def __init__(self, d: int, d_head: int, n_layer: int, backend: AttentionBackend = "auto",
                 gradient_checkpointing: bool = False, keep_attention: bool = True):
        super().__init__()
        self.input_norm = nn.LayerNorm(d, bias=False)
        self.blocks = nn.ModuleList(Block(d, d_head, backend) for _ in range(n_layer))
        self.gradient_checkpointing, self.keep_attention = gradient_checkpointing, keep_attention

    def forward(self, x: Tensor) -> Tensor:  # [B, N, d]
        x = self.input_norm(x)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                context = (functools.partial(create_selective_checkpoint_contexts, _keep_attention_policy)
                           if self.keep_attention else noop_context_fn)
                x = checkpoint(block, x, use_reentrant=False, context_fn=context)
            else:
                x = block(x)
        return x

