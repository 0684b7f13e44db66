"""facelift: FaceLift-style single-image 3D reconstruction (MVDiffusion + GS-LRM) on Lightning + Hydra."""
