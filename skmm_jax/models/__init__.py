"""Backbones as uniform "model bundles", and the ONE place naming the finetuned parameter subsets.

Model bundle interface (what training, gradient and feature code may rely on):

  bundle = skmm_jax.models.resnet18_bundle(num_classes=10, weights="/path/to/resnet-18")
  bundle.name                  # "resnet18" | "clip_vit_b32" | "resnet_tiny" | ...
  bundle.module                # flax.linen.Module: module.apply(variables, x, train=False,
                               #   head=True) -> logits; head=False -> features
  bundle.variables             # {"params": ..., ["batch_stats": ...]} (plain nested dicts)
  bundle.apply_features(variables, x) -> (B, feature_dim)   # frozen-backbone features
  bundle.apply_logits(variables, x)   -> (B, num_classes)   # features -> linear head
  bundle.preprocess            # skmm_jax.data.preprocess.Preprocess (resize, crop, mean, std)
  bundle.feature_dim           # int: 512 for ResNet18 and for CLIP ViT-B/32 (projection dim)
  bundle.weights_fingerprint   # str: hash of every weight (part of every feature cache key)
  bundle.subset(name)          # path predicate of the "lp" / "ft1" / "ft2" parameter subset

`x` is a float (B, H, W, 3) batch ALREADY normalised with `bundle.preprocess`
(`skmm_jax.data.preprocess.normalize`). Both apply functions are pure (inference-mode batch norm,
no dropout) and jit/vmap/grad friendly; per-example gradients of a subset are
`jax.vmap(jax.grad(loss))` over `split_params(params, bundle.subset("ft2"))[0]`.

Parameter subsets (`PARAM_SUBSETS`; paths are relative to the `params` collection):
  * lp / ft1: the linear head, `classifier/{kernel,bias}`, for every backbone;
  * ft2, ResNet18: the last 3x3 convolution of the last block
    (`stages_3_layers_1/layer_1/convolution/kernel`) + the classifier;
  * ft2, CLIP ViT-B/32: the visual projection (`visual_projection/kernel`) + the classifier.

A predicate takes a `jax.tree_util` key path (from `tree_flatten_with_path` over either the
`params` tree or the whole variables dict) or a tuple of names, and returns True when the leaf
is in the subset.

Example:
  >>> import jax
  >>> from skmm_jax import models
  >>> b = models.resnet_tiny_bundle(num_classes=3, seed=0)
  >>> pred = b.subset("ft2")
  >>> sel = [jax.tree_util.keystr(p) for p, _ in
  ...        jax.tree_util.tree_flatten_with_path(b.variables["params"])[0] if pred(p)]
  >>> sel
  ["['classifier']['bias']", "['classifier']['kernel']", "['stages_1_layers_0']['layer_1']['convolution']['kernel']"]
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from skmm_jax import cache
from skmm_jax.data.preprocess import CLIP, IMAGENET, Preprocess
from skmm_jax.models import heads, resnet
from skmm_jax.validation import SkmmError, check_choice

SUBSETS = ("lp", "ft1", "ft2")

# backbone family -> subset -> tuple of path prefixes (relative to `params`). For ResNets the
# FT-2 conv depends on the depth, so it is resolved from the module by `subset_prefixes`.
PARAM_SUBSETS: Dict[str, Dict[str, Tuple[Tuple[str, ...], ...]]] = {
    "resnet": {
        "lp": (("classifier",),),
        "ft1": (("classifier",),),
        "ft2": (("<last_conv3x3>",), ("classifier",)),
    },
    "clip": {
        "lp": (("classifier",),),
        "ft1": (("classifier",),),
        "ft2": (("visual_projection",), ("classifier",)),
    },
}


def _family(module) -> str:
  if isinstance(module, resnet.ResNet):
    return "resnet"
  if type(module).__name__ == "CLIPImageClassifier":
    return "clip"
  raise SkmmError(f"no parameter subsets are defined for {type(module).__name__}")


def subset_prefixes(module, subset: str) -> Tuple[Tuple[str, ...], ...]:
  """The path prefixes (relative to `params`) of `subset` for this backbone module."""
  check_choice(subset, SUBSETS, "parameter subset")
  out = []
  for prefix in PARAM_SUBSETS[_family(module)][subset]:
    if prefix == ("<last_conv3x3>",):
      prefix = module.last_conv3x3_path()
    out.append(tuple(prefix))
  return tuple(out)


def path_names(path) -> Tuple[str, ...]:
  """Names of a `jax.tree_util` key path (DictKey/GetAttrKey/...) or a tuple of strings,
  without a leading `params` collection name."""
  names = []
  for k in path:
    if isinstance(k, str):
      names.append(k)
    elif hasattr(k, "key"):
      names.append(str(k.key))
    elif hasattr(k, "name"):
      names.append(str(k.name))
    elif hasattr(k, "idx"):
      names.append(str(k.idx))
    else:
      names.append(str(k))
  if names and names[0] == "params":
    names = names[1:]
  return tuple(names)


def make_predicate(prefixes: Sequence[Sequence[str]]) -> Callable[[Any], bool]:
  """A predicate on key paths: True when the path starts with one of `prefixes`."""
  prefixes = tuple(tuple(p) for p in prefixes)

  def pred(path, *_):
    names = path_names(path)
    return any(names[:len(p)] == p for p in prefixes)

  pred.prefixes = prefixes
  return pred


def subset_predicate(module, subset: str) -> Callable[[Any], bool]:
  """Path predicate of the `subset` ("lp", "ft1", "ft2") parameters of `module`."""
  return make_predicate(subset_prefixes(module, subset))


def subset_mask(params, predicate):
  """A pytree of bools like `params` (e.g. for `optax.masked`)."""
  return jax.tree_util.tree_map_with_path(lambda p, _: bool(predicate(p)), params)


def split_params(params, predicate) -> Tuple[dict, dict]:
  """Splits a nested params dict into (selected, rest), both flat dicts keyed by name tuples.

  Raises SkmmError when the predicate selects nothing (a misnamed subset is never silent).
  """
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params))
  sel = {k: v for k, v in flat.items() if predicate(k)}
  if not sel:
    raise SkmmError(f"the parameter subset {getattr(predicate, 'prefixes', predicate)} "
                    f"selects no parameter; available top-level names: "
                    f"{sorted({k[0] for k in flat})}")
  rest = {k: v for k, v in flat.items() if k not in sel}
  return sel, rest


def merge_params(selected: dict, rest: dict) -> dict:
  """Inverse of `split_params`: a nested params dict."""
  return traverse_util.unflatten_dict({**rest, **selected})


def weights_fingerprint(variables) -> str:
  """sha256-based key over every leaf's path, dtype, shape and bytes."""
  flat = traverse_util.flatten_dict(flax.core.unfreeze(variables))
  parts = []
  for k in sorted(flat):
    parts.append("/".join(map(str, k)))
    parts.append(cache.array_fingerprint(np.asarray(flat[k])))
  return cache.fingerprint(parts)


class ModelBundle(NamedTuple):
  """A backbone with its weights, pure apply functions and preprocessing (see module doc)."""
  name: str
  module: Any
  variables: Any
  apply_features: Callable[[Any, jax.Array], jax.Array]
  apply_logits: Callable[[Any, jax.Array], jax.Array]
  preprocess: Preprocess
  feature_dim: int
  weights_fingerprint: str

  def subset(self, name: str) -> Callable[[Any], bool]:
    """Path predicate of the "lp" / "ft1" / "ft2" parameters."""
    return subset_predicate(self.module, name)


def bundle_from_module(name: str, module, variables, preprocess: Preprocess,
                       feature_dim: int) -> ModelBundle:
  """Wraps a module following the `module.apply(v, x, train=False, head=...)` convention."""

  def apply_features(v, x):
    return module.apply(v, x, train=False, head=False)

  def apply_logits(v, x):
    return module.apply(v, x, train=False, head=True)

  return ModelBundle(name, module, variables, apply_features, apply_logits, preprocess,
                     int(feature_dim), weights_fingerprint(variables))


def init_key(seed: int) -> jax.Array:
  """The PRNG key of random initialisations: XLA's RngBitGenerator (`rbg`) compiles ~5x faster
  than threefry for a whole network's init on CPU. Deterministic per seed on a given platform."""
  return jax.random.key(seed, impl="rbg")


def _init_variables(module, image_size: int, seed: int):
  v = jax.jit(module.init)(init_key(seed),
                           jnp.zeros((1, image_size, image_size, 3), jnp.float32))
  return jax.tree_util.tree_map(np.asarray, flax.core.unfreeze(v))


def resnet18_bundle(num_classes: int = 1000, weights: Optional[str] = None, seed: int = 0,
                    head_seed: Optional[int] = None) -> ModelBundle:
  """ResNet18 (ImageNet-pretrained when `weights` is given).

  Args:
    num_classes: outputs of the linear head. With pretrained weights and a `num_classes`
      different from the checkpoint's, the head is freshly initialised from `head_seed`.
    weights: a local directory (or file) holding `microsoft/resnet-18` (model.safetensors or
      pytorch_model.bin), or a hub id resolved from the local hub cache only; None = random init.
    seed: init seed for random weights.
  """
  if weights is None:
    module = resnet.resnet18(num_classes)
    variables = _init_variables(module, 224, seed)
  else:
    from skmm_jax.models import convert
    module, variables = convert.load_hf_resnet(weights, num_classes=num_classes,
                                               head_seed=seed if head_seed is None else head_seed)
  return bundle_from_module("resnet18", module, variables, IMAGENET, module.feature_dim)


def resnet_tiny_bundle(num_classes: int = 10, seed: int = 0, layer_type: str = "basic",
                       preprocess: Preprocess = IMAGENET._replace(resize=32, crop=32)) -> ModelBundle:
  """A tiny random ResNet bundle (tests, CPU smoke runs); 32x32 inputs by default."""
  module = resnet.resnet_tiny(num_classes, layer_type)
  variables = _init_variables(module, preprocess.crop, seed)
  return bundle_from_module("resnet_tiny", module, variables, preprocess, module.feature_dim)


def clip_bundle(num_classes: int = 0, weights: Optional[str] = "openai/clip-vit-base-patch32",
                seed: int = 0, config=None) -> ModelBundle:
  """CLIP image encoder (vision tower + projection, L2-normalised features) + linear head.

  See `skmm_jax.models.clip.clip_bundle`; imported lazily (transformers is slow to import).
  """
  from skmm_jax.models import clip
  return clip.clip_bundle(num_classes=num_classes, weights=weights, seed=seed, config=config)


BACKBONES = ("resnet18", "resnet_tiny", "clip_vit_b32", "clip_tiny")
DEFAULT_WEIGHTS = {"resnet18": "microsoft/resnet-18", "clip_vit_b32": "openai/clip-vit-base-patch32"}
RANDOM = "random"


def load_bundle(backbone: str, num_classes: int = 0, weights: Optional[str] = None,
                seed: int = 0) -> ModelBundle:
  """Bundle by name: "resnet18", "clip_vit_b32" (pretrained), "resnet_tiny", "clip_tiny" (random).

  Args:
    backbone: the name.
    num_classes: head outputs (0: a 1-output head is still created, unused by feature
      extraction).
    weights: for resnet18 / clip_vit_b32, a local checkpoint directory or a hub id in the local
      hub cache; None means the paper's checkpoint (`DEFAULT_WEIGHTS`, never downloaded: a
      clear error when absent); "random" means random init (smoke runs only).
    seed: seed of the random head (and of random weights).
  """
  check_choice(backbone, BACKBONES, "backbone")
  nc = max(int(num_classes), 1)
  if backbone == "resnet_tiny":
    return resnet_tiny_bundle(nc, seed)
  from skmm_jax.models import clip
  if backbone == "clip_tiny":
    return clip.clip_bundle(num_classes=nc, weights=None, seed=seed, config=clip.tiny_config())
  weights = DEFAULT_WEIGHTS[backbone] if weights is None else str(weights)
  random_init = weights.lower() == RANDOM
  if backbone == "resnet18":
    return resnet18_bundle(nc, None if random_init else weights, seed)
  return clip.clip_bundle(num_classes=nc, weights=None if random_init else weights, seed=seed)


__all__ = [
    "ModelBundle", "PARAM_SUBSETS", "SUBSETS", "subset_prefixes", "subset_predicate",
    "make_predicate", "path_names", "subset_mask", "split_params", "merge_params",
    "weights_fingerprint", "bundle_from_module", "resnet18_bundle", "resnet_tiny_bundle",
    "clip_bundle", "load_bundle", "BACKBONES", "DEFAULT_WEIGHTS", "RANDOM", "heads", "resnet",
]
