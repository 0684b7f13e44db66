"""MVDiffusion (FaceLift stage 1): one image -> 6 consistent views with a multi-view unCLIP UNet on diffusers."""

from facelift.models.mvdiffusion.loading import build_random_pipeline, load_pipeline, load_prompt_embeds
from facelift.models.mvdiffusion.pipeline import VIEW_NAMES, ClipPreprocess, Conditioning, MVDiffusionPipeline
from facelift.models.mvdiffusion.unet import MultiViewSettings, MultiViewUNet, build_unet, load_unet

__all__ = ["VIEW_NAMES", "ClipPreprocess", "Conditioning", "MVDiffusionPipeline", "MultiViewSettings", "MultiViewUNet",
           "build_random_pipeline", "build_unet", "load_pipeline", "load_prompt_embeds", "load_unet"]
