"""Full-size architecture facts of FaceLift's MVDiffusion (SD2.1-unclip based), for random-weight builds.

Used by the benchmark and the key-list test: a checkpoint folder's own config.json files always win when loading.
The UNet's keys and shapes match ``../shared/fixtures/reference/mvdiffusion_unet_state_dict_keys.txt``.
"""

from __future__ import annotations

UNET = {  # SD2.1-unclip's unet/config.json with FaceLift's changes: 8 input channels, 6 views, sparse attention
    "sample_size": 64, "in_channels": 8, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
    "class_embed_type": "projection", "projection_class_embeddings_input_dim": 2048, "upcast_attention": True,
    "num_views": 6, "multiview_attention": True, "sparse_mv_attention": True,
}

VAE = {  # SD2.1's AutoencoderKL
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "sample_size": 768, "scaling_factor": 0.18215,
}

IMAGE_ENCODER = {  # OpenCLIP ViT-H/14 vision tower with its 1024-d projection (SD2.1-unclip's image_encoder)
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}

SCHEDULER = {  # SD2.1's sampling schedule (v-prediction); FaceLift samples with DDIM on it
    "num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "v_prediction",
}

IMAGE_NOISING_SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}  # unCLIP's

PROMPT_TOKENS = 77  # CLIP text length of the fixed per-view prompt embeddings
