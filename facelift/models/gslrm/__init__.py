"""GS-LRM: a transformer from posed views to 3D Gaussians, compatible with FaceLift's checkpoints."""

from facelift.models.gslrm.model import GSLRM, GSLRMConfig

__all__ = ["GSLRM", "GSLRMConfig"]
