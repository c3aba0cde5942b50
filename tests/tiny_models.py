"""Tiny random-weight models built from the real config classes, saved with ``save_pretrained``.

Each builder writes a folder that loads through exactly the ``from_pretrained`` path a user's model takes (a few
hundred kB each, no download). The pictures they make are noise: tests check shapes, dtypes, frame counts,
chunking, tiling and files, never looks.

The tokenizer is a word-level ``tokenizers`` tokenizer wrapped in ``PreTrainedTokenizerFast`` (no vocabulary
files to fetch); it adds begin and end tokens like CLIP's.
"""

from __future__ import annotations

import os

import torch

WORDS = "a an the teddy bear dancing in snow cat dog red blue sky tree house".split()
HIDDEN = 16  # text width of every tiny text encoder


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for word in WORDS:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=16)


def clip_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS) + 4, hidden_size=HIDDEN, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                        projection_dim=HIDDEN, pad_token_id=0, bos_token_id=1, eos_token_id=2))


def t5_text_encoder(umt5: bool = False):
    """A T5 encoder (LTX-Video's), or with ``umt5`` the UMT5 one Wan uses (the same layout)."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    model, config = (UMT5EncoderModel, UMT5Config) if umt5 else (T5EncoderModel, T5Config)
    return model(config(vocab_size=len(WORDS) + 4, d_model=HIDDEN, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0))


def vae():
    """A 2-level AutoencoderKL: 4 latent channels, 2x downsampling."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                         sample_size=32)


def unet_2d(in_channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                norm_num_groups=4, cross_attention_dim=HIDDEN, attention_head_dim=4, sample_size=16,
                                in_channels=in_channels, out_channels=4)


def ddim(**kwargs):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, **kwargs)


def _save(pipe_or_model, folder, *extra) -> str:
    os.makedirs(folder, exist_ok=True)
    pipe_or_model.save_pretrained(folder)
    for other in extra:
        other.save_pretrained(folder)
    return str(folder)


def text_to_video_sd(folder) -> str:
    """zeroscope's family: ``TextToVideoSDPipeline`` with a UNet3D (legacy step callback, any frame count)."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
                                norm_num_groups=4, cross_attention_dim=HIDDEN, attention_head_dim=4, sample_size=16)
    pipe = TextToVideoSDPipeline(vae=vae(), text_encoder=clip_text_encoder(), tokenizer=tokenizer(), unet=unet,
                                 scheduler=ddim())
    return _save(pipe, folder)


def _ltx_parts():
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=2, attention_head_dim=8,
                                             cross_attention_dim=HIDDEN, num_layers=1, caption_channels=HIDDEN)
    video_vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    return {"scheduler": FlowMatchEulerDiscreteScheduler(), "vae": video_vae, "text_encoder": t5_text_encoder(),
            "tokenizer": tokenizer(), "transformer": transformer}


def ltx_text_to_video(folder) -> str:
    """LTX-Video text-to-video (``callback_on_step_end``; frames 4k+1 here, sizes a multiple of 32)."""
    from diffusers import LTXPipeline

    return _save(LTXPipeline(**_ltx_parts()), folder)


def ltx_image_to_video(folder) -> str:
    """LTX-Video image-to-video: the first frame is encoded by the video VAE."""
    from diffusers import LTXImageToVideoPipeline

    return _save(LTXImageToVideoPipeline(**_ltx_parts()), folder)


def _dpt_processor(**kwargs):
    from transformers import DPTImageProcessor

    return DPTImageProcessor(size={"height": 32, "width": 32}, ensure_multiple_of=8, do_pad=False, **kwargs)


def _positive_head(conv) -> None:
    # A random head ends in ReLU and may output (almost) only zeros; a bias gives depth something to show.
    with torch.no_grad():
        conv.bias.fill_(1.0)


def dpt(folder) -> str:
    """DPT (the MiDaS family): relative inverse depth from a ViT."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(0)
    model = DPTForDepthEstimation(DPTConfig(
        hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
        patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1, is_hybrid=False))
    _positive_head(model.head.head[-2])
    return _save(model, folder, _dpt_processor(keep_aspect_ratio=False))


def depth_anything(folder, metric: bool = False) -> str:
    """Depth Anything (V2 layout) on a tiny DINOv2: relative inverse depth, or metric with ``metric=True``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            image_size=32, patch_size=8, out_indices=[1, 2, 3, 4], apply_layernorm=True,
                            reshape_hidden_states=False)
    model = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=HIDDEN, patch_size=8, neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8, head_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5],
        depth_estimation_type="metric" if metric else "relative", max_depth=20))
    _positive_head(model.head.conv3)
    return _save(model, folder, _dpt_processor(keep_aspect_ratio=True))


def marigold(folder) -> str:
    """diffusers' Marigold depth (affine-invariant depth) with a UNet taking image and depth latents."""
    from diffusers import MarigoldDepthPipeline

    torch.manual_seed(0)
    pipe = MarigoldDepthPipeline(unet=unet_2d(8), vae=vae(), scheduler=ddim(prediction_type="v_prediction",
                                                                             timestep_spacing="trailing"),
                                 text_encoder=clip_text_encoder(), tokenizer=tokenizer(), prediction_type="depth",
                                 default_denoising_steps=1, default_processing_resolution=32)
    return _save(pipe, folder)


def sd_inpaint(folder) -> str:
    """Stable Diffusion inpainting: a UNet taking noise, mask and masked-image latents (9 channels)."""
    from diffusers import StableDiffusionInpaintPipeline

    torch.manual_seed(0)
    pipe = StableDiffusionInpaintPipeline(vae=vae(), text_encoder=clip_text_encoder(), tokenizer=tokenizer(),
                                          unet=unet_2d(9), scheduler=ddim(), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    return _save(pipe, folder)


def wan_vace(folder) -> str:
    """Wan VACE: a Wan transformer with a control stream that takes a video and a mask video (video inpainting;
    frames 4k+1, sizes a multiple of 16)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    # Three spatial halvings (8x) and two temporal (4x), as Wan 2.1's VAE; 4 latent channels.
    vae_ = AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    # The control stream sees the video's two halves (kept and to fill: 2 x 4 latent channels) and the mask
    # folded from each 8 x 8 block into channels (64).
    transformer = WanVACETransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                            in_channels=4, out_channels=4, text_dim=HIDDEN, freq_dim=16, ffn_dim=16,
                                            num_layers=2, cross_attn_norm=True, rope_max_seq_len=32,
                                            vace_layers=[0], vace_in_channels=2 * 4 + 64)
    pipe = WanVACEPipeline(tokenizer=tokenizer(), text_encoder=t5_text_encoder(umt5=True), vae=vae_,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer)
    return _save(pipe, folder)
