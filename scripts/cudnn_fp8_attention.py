"""cuDNN's FP8 flash attention through cudnn-frontend's graph API (``pip install nvidia-cudnn-frontend``), for
scripts/bench_attention.py: e4m3 q, k, v with per-tensor power-of-two scales; O and, for training, dq, dk, dv written
in the caller's ``out_dtype`` (bf16, fp16, or e4m3, which ``dequantized`` turns back into true units).

The recipe is the one cuDNN documents (Transformer Engine's "FP8 primer"): every FP8 tensor carries a scale (x·scale
is stored) and the kernel multiplies by the matching descale (1/scale); it also reports the absolute maxima of what it
wrote (amax_*), from which the scales of its own FP8 outputs and of the internal dP are calibrated once
(``calibrate``), as delayed scaling does from the previous step.
"""

from __future__ import annotations

import torch
from torch import Tensor

E4M3_MAX = 448.0  # largest finite float8_e4m3fn
SCALARS_FWD = ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")
SCALARS_BWD = ("descale_q", "descale_k", "descale_v", "descale_o", "descale_dO", "descale_s", "descale_dP", "scale_s",
               "scale_dQ", "scale_dK", "scale_dV", "scale_dP")
OUTPUTS_FWD = ("o", "stats", "amax_s", "amax_o")
OUTPUTS_BWD = ("dQ", "dK", "dV", "amax_dQ", "amax_dK", "amax_dV", "amax_dP")
# scale of an output the kernel quantizes -> the amax it reports for it (dP is always e4m3 inside the backward)
CALIBRATED = {"scale_o": "amax_o", "scale_dQ": "amax_dQ", "scale_dK": "amax_dK", "scale_dV": "amax_dV",
              "scale_dP": "amax_dP"}
# one uid per tensor name, shared by both graphs so one dict of buffers feeds either
UID = {name: i + 1 for i, name in enumerate(dict.fromkeys(("q", "k", "v", "dO") + SCALARS_FWD + SCALARS_BWD
                                                            + OUTPUTS_FWD + OUTPUTS_BWD))}
ONE = (1, 1, 1, 1)


def e4m3_scale(amax: Tensor) -> Tensor:
    """The largest power of two that keeps amax·scale <= 448: no overflow, and its reciprocal is exact."""
    return torch.exp2(torch.floor(torch.log2(E4M3_MAX / amax.float().clamp_min(1e-30))))


def bshd_empty(shape: tuple[int, int, int, int], dtype: torch.dtype, device) -> Tensor:
    """[B, H, N, D] view of a [B, N, H, D] buffer: the layout of the model's q/k/v views, and cuDNN's usual one."""
    b, h, n, d = shape
    return torch.empty((b, n, h, d), dtype=dtype, device=device).transpose(1, 2)


def quantize_e4m3(x: Tensor) -> tuple[Tensor, Tensor]:
    """x [B, H, N, D] -> (x·scale in e4m3, laid out as ``bshd_empty``; descale [1, 1, 1, 1] fp32), on the device
    without a host sync (the amax stays a tensor)."""
    scale = e4m3_scale(torch.linalg.vector_norm(x, float("inf"), dtype=torch.float32))
    x8 = bshd_empty(tuple(x.shape), torch.float8_e4m3fn, x.device)
    x8.copy_(x * scale)  # x·2^k is exact in x's dtype; the cast rounds to nearest even
    return x8, (1.0 / scale).reshape(ONE)


def poison(t: Tensor) -> Tensor:
    """Fill with NaN (e4m3's NaN is 0x7F), so an output the kernel does not write cannot pass for a result."""
    if t.dtype == torch.float8_e4m3fn:
        t.view(torch.uint8).fill_(0x7F)
    else:
        t.fill_(float("nan"))
    return t


class CudnnFp8Attention:
    """Non-causal attention over ``shape`` [B, H, N, D]: ``forward`` (and, if ``training``, ``backward``) run on the
    buffers in ``self.buf``, keyed by tensor name; the caller puts q, k, v (dO) and their descales there."""

    def __init__(self, cudnn, shape: tuple[int, int, int, int], out_dtype: torch.dtype, training: bool,
                 p_scale: float, device: str = "cuda"):
        self.cudnn, self.shape, self.out_dtype, self.training = cudnn, shape, out_dtype, training
        self.handle = cudnn.create_handle()
        cudnn.set_stream(self.handle, torch.cuda.current_stream().cuda_stream)
        self.dtypes = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF,
                       torch.float8_e4m3fn: cudnn.data_type.FP8_E4M3, torch.float32: cudnn.data_type.FLOAT}
        heuristics = [cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK]
        self.graphs, self.names = {}, {}  # pass -> graph, and the tensor names it binds
        for which in ("forward", "backward") if training else ("forward",):
            self._declared = []
            self.graphs[which] = self.declare_forward() if which == "forward" else self.declare_backward()
            self.names[which] = self._declared
        for graph in self.graphs.values():
            graph.build(heuristics)
        self.workspace = {k: torch.empty(g.get_workspace_size(), dtype=torch.uint8, device=device)
                          for k, g in self.graphs.items()}
        b, h, n, _ = shape
        self.buf = {name: torch.ones(ONE, device=device) for name in SCALARS_FWD + SCALARS_BWD}
        self.buf["scale_s"].fill_(p_scale)
        self.buf["descale_s"].fill_(1.0 / p_scale)
        self.buf |= {name: torch.empty(ONE, device=device) for name in OUTPUTS_FWD + OUTPUTS_BWD if "amax" in name}
        self.buf["o"] = bshd_empty(shape, out_dtype, device)
        if training:
            self.buf["stats"] = torch.empty((b, h, n, 1), device=device)  # log-sum-exp per query, for the backward
            self.buf |= {g: bshd_empty(shape, out_dtype, device) for g in ("dQ", "dK", "dV")}

    def engines(self) -> dict[str, str]:
        """Which engine serves each graph: a python (FROST) engine by name, else the cuDNN backend."""
        return {k: getattr(getattr(g, "selected_engine", None), "name", None) or "cudnn backend"
                for k, g in self.graphs.items()}

    def _graph(self):
        c = self.cudnn
        return c.pygraph(io_data_type=c.data_type.FP8_E4M3, intermediate_data_type=c.data_type.FLOAT,
                         compute_data_type=c.data_type.FLOAT, handle=self.handle)

    def _tensor(self, graph, name: str, dtype: torch.dtype, dims=None, stride=None):
        _, h, n, d = self.shape
        dims, stride = dims or self.shape, stride or (n * h * d, d, h * d, 1)  # default: bshd_empty's layout
        self._declared.append(name)
        return graph.tensor(name=name, uid=UID[name], dim=dims, stride=stride, data_type=self.dtypes[dtype])

    def _output(self, tensor, name: str, dtype: torch.dtype, dims=None, stride=None) -> None:
        _, h, n, d = self.shape
        dims, stride = dims or self.shape, stride or (n * h * d, d, h * d, 1)
        self._declared.append(name)
        tensor.set_uid(UID[name]).set_output(True).set_dim(dims).set_stride(stride).set_data_type(self.dtypes[dtype])

    def _stats_layout(self):
        b, h, n, _ = self.shape
        return (b, h, n, 1), (h * n, n, 1, 1)

    def declare_forward(self):
        graph = self._graph()
        qkv = {x: self._tensor(graph, x, torch.float8_e4m3fn) for x in "qkv"}
        scalars = {x: self._tensor(graph, x, torch.float32, ONE, ONE) for x in SCALARS_FWD}
        o, stats, amax_s, amax_o = graph.sdpa_fp8(**qkv, **scalars, generate_stats=self.training,
                                                  attn_scale=self.shape[3] ** -0.5, use_causal_mask=False)
        self._output(o, "o", self.out_dtype)
        if self.training:
            self._output(stats, "stats", torch.float32, *self._stats_layout())
        for name, t in (("amax_s", amax_s), ("amax_o", amax_o)):
            self._output(t, name, torch.float32, ONE, ONE)
        return graph

    def declare_backward(self):
        graph = self._graph()
        ins = {x: self._tensor(graph, x, torch.float8_e4m3fn) for x in ("q", "k", "v", "dO")}
        ins["o"] = self._tensor(graph, "o", self.out_dtype)
        ins["stats"] = self._tensor(graph, "stats", torch.float32, *self._stats_layout())
        ins |= {x: self._tensor(graph, x, torch.float32, ONE, ONE) for x in SCALARS_BWD}
        outs = graph.sdpa_fp8_backward(**ins, attn_scale=self.shape[3] ** -0.5, use_causal_mask=False)
        for name, t in zip(OUTPUTS_BWD, outs):
            if name.startswith("amax"):
                self._output(t, name, torch.float32, ONE, ONE)
            else:
                self._output(t, name, self.out_dtype)
        return graph

    def _run(self, which: str) -> None:
        pack = {UID[n]: self.buf[n] for n in self.names[which]}
        self.graphs[which].execute(pack, self.workspace[which], handle=self.handle)

    def forward(self) -> None:
        self._run("forward")

    def backward(self) -> None:
        self._run("backward")

    def calibrate(self) -> dict[str, float]:
        """One forward (and backward) with unit output scales, then each e4m3 output's scale from the amax it
        reported: the first step of delayed scaling. Returns the amaxes (the caller has set q, k, v (dO))."""
        fp8_out = self.out_dtype == torch.float8_e4m3fn
        for name in CALIBRATED:
            self.buf[name].fill_(1.0)
        self.buf["descale_o"].fill_(1.0)
        self.buf["descale_dP"].fill_(1.0)
        self.forward()
        if self.training:
            self.backward()
        amax = {a: self.buf[a].item() for a in ("amax_s", "amax_o") + (OUTPUTS_BWD[3:] if self.training else ())}
        for scale, a in CALIBRATED.items():
            if a in amax and (fp8_out or scale == "scale_dP"):
                self.buf[scale].copy_(e4m3_scale(self.buf[a]))
        self.buf["descale_o"].copy_(1.0 / self.buf["scale_o"])
        self.buf["descale_dP"].copy_(1.0 / self.buf["scale_dP"])
        return amax

    def dequantized(self, name: str) -> Tensor:
        """An output in fp32 true units (an e4m3 output divided by its scale)."""
        out = self.buf[name].float()
        scale = {"o": "scale_o", "dQ": "scale_dQ", "dK": "scale_dK", "dV": "scale_dV"}[name]
        return out / self.buf[scale] if self.out_dtype == torch.float8_e4m3fn else out
