"""Multi-view self-attention as a diffusers attention processor (the only computational change of FaceLift's UNet).

A batch holds the views of each object consecutively, ``(b t)`` with ``t = num_views`` fastest. Every spatial
self-attention (``attn1``) lets each view look beyond itself:

- sparse ("front + self", the variant FaceLift trains and runs): keys/values = [front view (view 0 of the object) ;
  the view itself], so each view sees 2 n tokens;
- dense ("all views"): keys/values = all t views of the object. Every query of an object then sees the same t n
  tokens, so this is plain self-attention over the object's t n tokens — no key copies needed.

Both run on ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU). The layer's parameters
(``to_q``, ``to_k``, ``to_v``, ``to_out``) are the stock ``Attention`` ones, so weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import Tensor


class MultiViewAttnProcessor:
    """Self-attention across the views of each object; ``sparse`` picks "front + self", else all views."""

    def __init__(self, num_views: int, sparse: bool):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.num_views, self.sparse = num_views, sparse

    def __call__(self, attn: Attention, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None) -> Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("MultiViewAttnProcessor is a self-attention processor: no encoder states, no mask")
        if attn.spatial_norm is not None or attn.group_norm is not None or attn.norm_q is not None:
            raise ValueError("MultiViewAttnProcessor supports the plain SD attention layer (no extra norms)")
        bt, n, _ = hidden_states.shape  # [(b t), n, c]: n tokens of one view
        t, heads = self.num_views, attn.heads
        if bt % t:
            raise ValueError(f"batch of {bt} view entries is not a multiple of num_views={t} (layout '(b t)')")
        b = bt // t
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)  # [(b t), n, c]
        d = q.shape[-1] // heads

        if self.sparse:
            q = q.view(bt, n, heads, d).transpose(1, 2)  # [(b t), h, n, d]
            k, v = (self._front_and_self(x, b, t, n, heads, d) for x in (k, v))  # [(b t), h, 2n, d]
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)  # [(b t), h, n, d]
            out = out.transpose(1, 2).reshape(bt, n, heads * d)
        else:  # one sequence of t n tokens per object: "(b t) n c -> b (t n) c"
            q, k, v = (x.reshape(b, t * n, heads, d).transpose(1, 2) for x in (q, k, v))  # [b, h, t n, d]
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)  # [b, h, t n, d]
            out = out.transpose(1, 2).reshape(bt, n, heads * d)
        out = attn.to_out[1](attn.to_out[0](out.to(q.dtype)))  # linear, dropout
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    @staticmethod
    def _front_and_self(x: Tensor, b: int, t: int, n: int, heads: int, d: int) -> Tensor:
        """``[(b t), n, c]`` -> ``[(b t), h, 2n, d]``: each view's tokens preceded by its object's front-view tokens."""
        x = x.view(b, t, n, heads, d)
        front = x[:, :1].expand(b, t, n, heads, d)  # view 0 of each object, broadcast over its views
        return torch.cat([front, x], dim=2).view(b * t, 2 * n, heads, d).transpose(1, 2)
