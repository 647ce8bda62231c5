"""CLIP image encoder (ViT vision tower + visual projection, L2-normalised) with a linear head.

Built on transformers' Flax CLIP (`FlaxCLIPVisionTransformer`, the module inside
`FlaxCLIPVisionModel` / `FlaxCLIPModel`), so the parameter tree is exactly that of
`FlaxCLIPModel` restricted to the image side:

  params/vision_model/...          (FlaxCLIPModel params["vision_model"])
  params/visual_projection/kernel  (FlaxCLIPModel params["visual_projection"], no bias)
  params/classifier/{kernel,bias}  (our linear head, `skmm_jax.models.heads.LinearHead`)

Features are the projected image embeddings divided by their L2 norm, as the paper uses them
(512-d for ViT-B/32). Weights come from a local directory or the hub cache only
(`openai/clip-vit-base-patch32`); nothing is downloaded, and a checkpoint whose image side does
not match the module exactly (missing / unexpected / misshaped leaves) is an error.

Example (a tiny random config, as in the tests):
  >>> import jax.numpy as jnp
  >>> from skmm_jax.models import clip
  >>> b = clip.clip_bundle(num_classes=3, weights=None, config=clip.tiny_config())
  >>> f = b.apply_features(b.variables, jnp.zeros((2, 32, 32, 3)))
  >>> f.shape, bool(jnp.allclose(jnp.linalg.norm(f, axis=-1), 1.0, atol=1e-5))
  ((2, 8), True)
"""
from __future__ import annotations

from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from skmm_jax.data.preprocess import CLIP
from skmm_jax.models.heads import LinearHead
from skmm_jax.validation import SkmmError

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class CLIPImageClassifier(nn.Module):
  """Vision tower -> visual projection -> L2 normalisation -> optional linear head.

  Attributes:
    vision_config: a `transformers.CLIPVisionConfig`.
    projection_dim: output size of the visual projection (512 for ViT-B/32).
    num_classes: head outputs (0: no head).
  """
  vision_config: Any
  projection_dim: int
  num_classes: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False, head: bool = True):
    """Args: x (B, H, W, 3) normalised images; train: enables dropout (CLIP has none by
    default); head: apply the classifier. Returns logits or (B, projection_dim) unit features."""
    from transformers.models.clip.modeling_flax_clip import FlaxCLIPVisionTransformer
    out = FlaxCLIPVisionTransformer(self.vision_config, name="vision_model")(
        pixel_values=x, deterministic=not train, return_dict=False)
    pooled = out[1]
    f = nn.Dense(self.projection_dim, use_bias=False, name="visual_projection")(pooled)
    f = f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    if not head or self.num_classes == 0:
      return f
    return LinearHead(self.num_classes, name="classifier")(f)

  @property
  def feature_dim(self) -> int:
    return int(self.projection_dim)


def tiny_config():
  """A tiny random `CLIPConfig` (32x32 images, 8x8 patches, 2 layers, 8-d projection) for tests."""
  from transformers import CLIPConfig
  return CLIPConfig(
      text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, vocab_size=64, max_position_embeddings=16),
      vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, image_size=32, patch_size=8),
      projection_dim=8)


def _shapes(tree):
  return {k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def load_clip_params(weights: str, module: Optional[CLIPImageClassifier] = None):
  """Loads the image side of a `FlaxCLIPModel` checkpoint from a directory or the hub cache.

  Args:
    weights: a local directory (config.json + flax_model.msgpack or model.safetensors) or a hub
      id present in the local hub cache.
    module: optional target module to check against (default: built from the checkpoint).
  Returns:
    (config, {"vision_model": ..., "visual_projection": ...}) as numpy arrays.
  Raises:
    SkmmError: weights absent locally, or the image-side leaves do not match exactly.
  """
  from skmm_jax.models.convert import resolve_weights_dir
  from transformers import CLIPConfig, FlaxCLIPModel
  import json, os
  path = resolve_weights_dir(weights)
  cfg_file = os.path.join(path, "config.json")
  model_type = json.load(open(cfg_file)).get("model_type") if os.path.isfile(cfg_file) else None
  if model_type != "clip":
    raise SkmmError(f"{path!r} is not a full CLIPModel checkpoint (config.json model_type is "
                    f"{model_type!r}, expected 'clip'): the vision tower AND the visual projection "
                    f"are needed, e.g. {DEFAULT_CLIP!r}.")
  try:
    config = CLIPConfig.from_pretrained(path, local_files_only=True)
    _, params = FlaxCLIPModel.from_pretrained(path, config=config, _do_init=False,
                                              local_files_only=True)
  except (OSError, ValueError) as e:
    raise SkmmError(f"could not load CLIP weights from {path!r}: {e}") from None
  params = flax.core.unfreeze(params)
  missing_top = [k for k in ("vision_model", "visual_projection") if k not in params]
  if missing_top:
    raise SkmmError(f"CLIP checkpoint {path!r} has no {missing_top}: a full CLIPModel checkpoint "
                    "(vision tower and projection) is required.")
  loaded = {k: jax.tree_util.tree_map(np.asarray, params[k])
            for k in ("vision_model", "visual_projection")}
  module = module or CLIPImageClassifier(config.vision_config, config.projection_dim, 0)
  size = module.vision_config.image_size
  expected = jax.eval_shape(lambda k, x: module.init(k, x, head=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, size, size, 3), jnp.float32))["params"]
  want, got = _shapes(expected), _shapes(loaded)
  missing = sorted("/".join(k) for k in set(want) - set(got))
  unexpected = sorted("/".join(k) for k in set(got) - set(want))
  bad = sorted(f"{'/'.join(k)}: {got[k]} vs {want[k]}" for k in set(want) & set(got)
               if got[k] != want[k])
  if missing or unexpected or bad:
    raise SkmmError(f"CLIP checkpoint {path!r} does not match the image encoder: "
                    f"missing {missing[:20]}, unexpected {unexpected[:20]}, misshaped {bad[:20]}")
  return config, loaded


def clip_bundle(num_classes: int = 0, weights: Optional[str] = DEFAULT_CLIP, seed: int = 0,
                config=None):
  """A `ModelBundle` for the CLIP image encoder.

  Args:
    num_classes: linear head outputs (0: features only; the head is drawn from `seed`).
    weights: local directory / cached hub id, or None for random weights from `config`.
    seed: seed of the random head (and of the whole model when `weights` is None).
    config: a `CLIPConfig` for random init (default: ViT-B/32's).
  """
  from skmm_jax import models
  from skmm_jax.models import init_key
  if weights is not None:
    config, loaded = load_clip_params(weights)
  elif config is None:
    from transformers import CLIPConfig
    config = CLIPConfig()
  module = CLIPImageClassifier(config.vision_config, int(config.projection_dim), int(num_classes))
  size = int(config.vision_config.image_size)
  variables = jax.jit(module.init)(init_key(seed),
                                   jnp.zeros((1, size, size, 3), jnp.float32))
  variables = jax.tree_util.tree_map(np.asarray, flax.core.unfreeze(variables))
  if weights is not None:
    variables["params"].update(loaded)
  name = "clip_vit_b32" if (size, config.vision_config.patch_size,
                            config.vision_config.hidden_size) == (224, 32, 768) else "clip"
  preprocess = CLIP._replace(resize=size, crop=size)
  return models.bundle_from_module(name, module, variables, preprocess, module.feature_dim)
