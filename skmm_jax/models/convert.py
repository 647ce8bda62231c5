"""Strict conversion of Hugging Face PyTorch ResNet checkpoints to `skmm_jax.models.resnet`.

Every Flax leaf is paired with exactly one checkpoint tensor by a fixed renaming, and the two
key sets must match: a missing or unexpected key (or a shape mismatch) raises `SkmmError`
listing the offending keys. `num_batches_tracked` counters (one per batch norm, no Flax
counterpart; present in PyTorch state dicts) are the only keys accepted without being loaded,
and are reported as `ignored`.

Renaming (HF `ResNetForImageClassification` -> Flax):
  resnet.embedder.embedder.{convolution,normalization}.*  -> embedder/...
  resnet.encoder.stages.S.layers.L.{layer.K,shortcut}.*   -> stages_S_layers_L/{layer_K,shortcut}/...
  classifier.1.{weight,bias}                              -> classifier/{kernel,bias}
  convolution.weight (O, I, kh, kw) -> convolution/kernel (kh, kw, I, O)
  normalization.weight / bias       -> params .../scale / bias
  normalization.running_mean / var  -> batch_stats .../mean / var
  classifier.1.weight (out, in)     -> classifier/kernel (in, out)
A base `ResNetModel` checkpoint (keys without the `resnet.` prefix, no classifier) is accepted;
its head is then freshly initialised.

Example (a checkpoint written in the HF layout, see tests/test_models.py):
  >>> module, variables = load_hf_resnet("/data/weights/resnet-18", num_classes=10)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from skmm_jax.models import resnet as resnet_lib
from skmm_jax.models.heads import LinearHead
from skmm_jax.validation import SkmmError

DEFAULT_RESNET = "microsoft/resnet-18"
_BN_FIELDS = {("params", "scale"): "weight", ("params", "bias"): "bias",
              ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


class ConversionReport(NamedTuple):
  """What happened to every checkpoint tensor.

  Attributes:
    loaded: checkpoint keys copied into the Flax variables.
    ignored: `num_batches_tracked` counters (no Flax counterpart).
    replaced: checkpoint head keys not used because a head of another size was requested.
  """
  loaded: Tuple[str, ...]
  ignored: Tuple[str, ...]
  replaced: Tuple[str, ...]


def flax_to_hf_key(collection: str, path: Tuple[str, ...], prefix: str = "resnet.") -> str:
  """The HF state-dict key of one Flax leaf (`collection` is "params" or "batch_stats")."""
  if path[0] == "classifier":
    return {"kernel": "classifier.1.weight", "bias": "classifier.1.bias"}[path[1]]
  head, rest = path[0], list(path[1:])
  if head == "embedder":
    parts = ["embedder", "embedder"]
  else:
    m = re.fullmatch(r"stages_(\d+)_layers_(\d+)", head)
    if m is None:
      raise SkmmError(f"unexpected Flax ResNet module {head!r}")
    parts = ["encoder", "stages", m.group(1), "layers", m.group(2)]
    if rest[0].startswith("layer_"):
      parts += ["layer", rest[0][len("layer_"):]]
      rest = rest[1:]
    elif rest[0] == "shortcut":
      parts += ["shortcut"]
      rest = rest[1:]
  sub, leaf = rest
  if sub == "convolution":
    parts += ["convolution", "weight"]
  elif sub == "normalization":
    parts += ["normalization", _BN_FIELDS[(collection, leaf)]]
  else:
    raise SkmmError(f"unexpected Flax ResNet leaf {collection}/{'/'.join(path)}")
  return prefix + ".".join(parts)


def _to_flax(key: str, t: np.ndarray) -> np.ndarray:
  if key.endswith("convolution.weight"):
    return np.transpose(t, (2, 3, 1, 0))
  if key == "classifier.1.weight":
    return np.transpose(t)
  return t


def convert_resnet_state_dict(state_dict: Dict[str, np.ndarray], module: resnet_lib.ResNet,
                              head_seed: int = 0):
  """Converts a HF ResNet state dict (numpy arrays) into variables for `module`.

  Args:
    state_dict: key -> array, as in `ResNetForImageClassification.state_dict()` or
      `ResNetModel.state_dict()`.
    module: the target `ResNet`; its `num_classes` may differ from the checkpoint's
      (a fresh zero-mean head is then drawn from `head_seed`).
  Returns:
    (variables, ConversionReport)
  Raises:
    SkmmError: missing / unexpected keys or shape mismatches (all listed).
  """
  keys = set(state_dict)
  prefix = "resnet." if any(k.startswith("resnet.") for k in keys) else ""
  has_head = "classifier.1.weight" in keys
  ckpt_classes = int(np.shape(state_dict["classifier.1.weight"])[0]) if has_head else 0
  use_head = has_head and module.num_classes == ckpt_classes
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 64, 64, 3), jnp.float32))
  flat_shapes = traverse_util.flatten_dict(flax.core.unfreeze(shapes))

  expected: Dict[str, tuple] = {}
  for (collection, *path), sd in flat_shapes.items():
    path = tuple(path)
    if path[0] == "classifier" and not use_head:
      continue
    expected[flax_to_hf_key(collection, path, prefix)] = (collection, path, tuple(sd.shape))
  bn_prefixes = {k[:-len("running_mean")] for k in expected if k.endswith("running_mean")}
  counters = {p + "num_batches_tracked" for p in bn_prefixes}
  replaced = {k for k in keys if k.startswith("classifier.")} if (has_head and not use_head) else set()

  missing = sorted(set(expected) - keys)
  allowed = set(expected) | counters | replaced
  unexpected = sorted(keys - allowed)
  problems = []
  if missing:
    problems.append(f"{len(missing)} missing key(s): {missing[:20]}")
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected key(s): {unexpected[:20]}")
  flat_vars = {}
  for key, (collection, path, shape) in expected.items():
    if key not in state_dict:
      continue
    value = _to_flax(key, np.asarray(state_dict[key], dtype=np.float32))
    if value.shape != shape:
      problems.append(f"shape mismatch for {key}: checkpoint {tuple(state_dict[key].shape)} "
                      f"-> {value.shape}, module expects {shape}")
      continue
    flat_vars[(collection,) + path] = value
  if problems:
    raise SkmmError("the ResNet checkpoint does not match the module "
                    f"(depths={tuple(module.depths)}, hidden_sizes={tuple(module.hidden_sizes)}, "
                    f"layer_type={module.layer_type!r}): " + "; ".join(problems))
  if module.num_classes and not use_head:
    head = LinearHead(module.num_classes)
    hv = head.init(jax.random.PRNGKey(head_seed), jnp.zeros((1, module.feature_dim), jnp.float32))
    for name, value in hv["params"].items():
      flat_vars[("params", "classifier", name)] = np.asarray(value)
  variables = traverse_util.unflatten_dict(flat_vars)
  report = ConversionReport(tuple(sorted(expected)), tuple(sorted(counters & keys)),
                            tuple(sorted(replaced)))
  return variables, report


def resolve_weights_dir(weights: str) -> str:
  """A local directory for `weights`: the path itself, or the hub-cache snapshot of a repo id.

  Never downloads. Raises SkmmError naming the id, the cache and what to do when absent.
  """
  if os.path.exists(weights):
    return weights
  if re.fullmatch(r"[\w.-]+/[\w.-]+", weights):
    try:
      from huggingface_hub import snapshot_download
      return snapshot_download(weights, local_files_only=True)
    except Exception as e:  # LocalEntryNotFoundError, offline errors, missing package
      cache_dir = os.environ.get("HF_HUB_CACHE") or os.path.join(
          os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
      raise SkmmError(
          f"pretrained weights {weights!r} are not available locally (looked for a directory "
          f"of that name and in the Hugging Face hub cache {cache_dir}; nothing is downloaded). "
          f"On a machine with internet run `huggingface-cli download {weights}` (or "
          f"`huggingface-cli download {weights} --local-dir /path/to/dir`) and pass that "
          f"directory. ({type(e).__name__})") from None
  raise SkmmError(f"pretrained weights {weights!r}: no such file or directory, and not a hub id "
                  "of the form 'owner/name'.")


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """Reads model.safetensors (no torch needed) or pytorch_model.bin (needs torch) as numpy."""
  if os.path.isdir(path):
    for name in ("model.safetensors", "pytorch_model.bin"):
      if os.path.isfile(os.path.join(path, name)):
        path = os.path.join(path, name)
        break
    else:
      raise SkmmError(f"no model.safetensors or pytorch_model.bin in {path!r}")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    return dict(load_file(path))
  try:
    import torch
  except ImportError:
    raise SkmmError(f"{path!r} is a PyTorch checkpoint and torch is not installed; use the "
                    "model.safetensors file of the same repository instead.") from None
  sd = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}


def load_hf_resnet(weights: str = DEFAULT_RESNET, num_classes: Optional[int] = None,
                   head_seed: int = 0, return_report: bool = False):
  """Loads a HF ResNet checkpoint (directory, file or cached hub id) into (module, variables).

  Args:
    weights: directory with config.json + model.safetensors / pytorch_model.bin, a checkpoint
      file, or a hub id present in the local hub cache.
    num_classes: head outputs; None keeps the checkpoint's head (1000 ImageNet classes).
    head_seed: seed of a fresh head when `num_classes` differs from the checkpoint's.
    return_report: also return the `ConversionReport`.
  """
  path = resolve_weights_dir(weights)
  directory = path if os.path.isdir(path) else os.path.dirname(path)
  cfg_path = os.path.join(directory, "config.json")
  state_dict = read_state_dict(path)
  if os.path.isfile(cfg_path):
    with open(cfg_path) as f:
      cfg = json.load(f)
  else:
    cfg = dict(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64,
               layer_type="basic")
  if num_classes is None:
    w = state_dict.get("classifier.1.weight")
    num_classes = int(w.shape[0]) if w is not None else 0
  module = resnet_lib.from_hf_config(cfg, num_classes=num_classes)
  variables, report = convert_resnet_state_dict(state_dict, module, head_seed)
  return (module, variables, report) if return_report else (module, variables)
