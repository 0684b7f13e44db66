"""Rendering: Gaussians into cameras (gsplat on CUDA, a PyTorch twin on CPU), turntable orbits and videos."""

from facelift.render.renderer import Backend, Renders, render

__all__ = ["Backend", "Renders", "render"]
