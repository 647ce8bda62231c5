"""ResNet (v1.5, as in Hugging Face `ResNetModel`) in Flax Linen, with an optional linear head.

The module tree mirrors the Hugging Face PyTorch layout of `microsoft/resnet-18`, so that the
converter in `skmm_jax.models.convert` is a fixed renaming (`.N` -> `_N`, `weight` -> `kernel` /
`scale`, `running_mean` -> `mean`, ...):

  params/embedder/convolution/kernel                     resnet.embedder.embedder.convolution.weight
  params/embedder/normalization/{scale,bias}             resnet.embedder.embedder.normalization.*
  params/stages_{s}_layers_{l}/layer_{k}/convolution/kernel
                                                         resnet.encoder.stages.s.layers.l.layer.k.*
  params/stages_{s}_layers_{l}/shortcut/{convolution,normalization}/...
  params/classifier/{kernel,bias}                        classifier.1.{weight,bias}
  batch_stats/.../normalization/{mean,var}               ...normalization.running_{mean,var}

Inputs are NHWC float images already normalised (see `skmm_jax.data.preprocess`). Batch norm
uses running statistics when `train=False` (the default; FT-2 gradients use inference mode).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from skmm_jax.models import resnet
  >>> model = resnet.resnet_tiny(num_classes=3)
  >>> v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  >>> model.apply(v, jnp.zeros((2, 32, 32, 3))).shape
  (2, 3)
  >>> model.apply(v, jnp.zeros((2, 32, 32, 3)), head=False).shape   # pooled features
  (2, 16)
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from skmm_jax.models.heads import LinearHead

BN_EPS = 1e-5       # torch.nn.BatchNorm2d defaults
BN_MOMENTUM = 0.9   # flax convention: 1 - torch momentum (0.1)
# HF / torchvision init: kaiming_normal_(mode="fan_out", nonlinearity="relu"), untruncated.
CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvLayer(nn.Module):
  """Conv (no bias, torch-style symmetric padding k//2) -> BatchNorm -> optional ReLU."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  relu: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    k, p = self.kernel_size, self.kernel_size // 2
    x = nn.Conv(self.features, (k, k), strides=(self.stride, self.stride),
                padding=((p, p), (p, p)), use_bias=False, kernel_init=CONV_INIT,
                name="convolution")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS,
                     name="normalization")(x)
    return nn.relu(x) if self.relu else x


class ShortCut(nn.Module):
  """1x1 strided projection + BatchNorm (used when channels or stride change)."""
  features: int
  stride: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (1, 1), strides=(self.stride, self.stride), padding="VALID",
                use_bias=False, kernel_init=CONV_INIT, name="convolution")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS,
                        name="normalization")(x)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (ResNet18/34)."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    residual = x
    if x.shape[-1] != self.features or self.stride != 1:
      residual = ShortCut(self.features, self.stride, name="shortcut")(x, train)
    y = ConvLayer(self.features, 3, self.stride, name="layer_0")(x, train)
    y = ConvLayer(self.features, 3, 1, relu=False, name="layer_1")(y, train)
    return nn.relu(y + residual)


class Bottleneck(nn.Module):
  """1x1 reduce -> 3x3 (strided) -> 1x1 expand, with a residual connection (ResNet50+)."""
  features: int
  stride: int = 1
  reduction: int = 4
  downsample_in_bottleneck: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    residual = x
    if x.shape[-1] != self.features or self.stride != 1:
      residual = ShortCut(self.features, self.stride, name="shortcut")(x, train)
    r = self.features // self.reduction
    s0, s1 = (self.stride, 1) if self.downsample_in_bottleneck else (1, self.stride)
    y = ConvLayer(r, 1, s0, name="layer_0")(x, train)
    y = ConvLayer(r, 3, s1, name="layer_1")(y, train)
    y = ConvLayer(self.features, 1, 1, relu=False, name="layer_2")(y, train)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """ResNet with an ImageNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and a linear head.

  Attributes:
    depths: blocks per stage, e.g. (2, 2, 2, 2) for ResNet18.
    hidden_sizes: output channels per stage, e.g. (64, 128, 256, 512).
    embedding_size: stem channels.
    layer_type: "basic" or "bottleneck".
    num_classes: head outputs; 0 means no head (features only).
    downsample_in_first_stage: stride 2 in the first stage (False for HF ResNets).
    downsample_in_bottleneck: put the stride in the first 1x1 conv of a bottleneck.
  """
  depths: Sequence[int] = (2, 2, 2, 2)
  hidden_sizes: Sequence[int] = (64, 128, 256, 512)
  embedding_size: int = 64
  layer_type: str = "basic"
  num_classes: int = 1000
  downsample_in_first_stage: bool = False
  downsample_in_bottleneck: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False, head: bool = True):
    """Args: x (B, H, W, C) normalised images; train: batch-norm mode; head: apply the
    classifier (else return the (B, hidden_sizes[-1]) pooled features).
    Returns: logits (B, num_classes) or features."""
    x = ConvLayer(self.embedding_size, 7, 2, name="embedder")(x, train)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, (depth, width) in enumerate(zip(self.depths, self.hidden_sizes)):
      for l in range(depth):
        stride = (2 if (s > 0 or self.downsample_in_first_stage) else 1) if l == 0 else 1
        name = f"stages_{s}_layers_{l}"
        if self.layer_type == "basic":
          block = BasicBlock(width, stride, name=name)
        else:
          block = Bottleneck(width, stride, downsample_in_bottleneck=self.downsample_in_bottleneck,
                             name=name)
        x = block(x, train)
    feats = jnp.mean(x, axis=(1, 2))
    if not head or self.num_classes == 0:
      return feats
    return LinearHead(self.num_classes, name="classifier")(feats)

  @property
  def feature_dim(self) -> int:
    return int(self.hidden_sizes[-1])

  def last_conv3x3_path(self) -> tuple:
    """Parameter path (without the `params` collection) of the last 3x3 convolution kernel of
    the last block: the FT-2 layer of the paper."""
    s, l = len(self.depths) - 1, self.depths[-1] - 1
    return (f"stages_{s}_layers_{l}", "layer_1", "convolution", "kernel")


def resnet18(num_classes: int = 1000) -> ResNet:
  """ResNet18 (microsoft/resnet-18 architecture)."""
  return ResNet(depths=(2, 2, 2, 2), hidden_sizes=(64, 128, 256, 512), embedding_size=64,
                layer_type="basic", num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
  """ResNet50 (microsoft/resnet-50 architecture)."""
  return ResNet(depths=(3, 4, 6, 3), hidden_sizes=(256, 512, 1024, 2048), embedding_size=64,
                layer_type="bottleneck", num_classes=num_classes)


def resnet_tiny(num_classes: int = 10, layer_type: str = "basic") -> ResNet:
  """A tiny random ResNet for tests: 2 stages of 1 block, 8/16 channels."""
  sizes = (8, 16) if layer_type == "basic" else (16, 32)
  return ResNet(depths=(1, 1), hidden_sizes=sizes, embedding_size=8, layer_type=layer_type,
                num_classes=num_classes)


def from_hf_config(config, num_classes: Optional[int] = None) -> ResNet:
  """A `ResNet` matching a `transformers.ResNetConfig` (or its dict form)."""
  get = (lambda k, d=None: config.get(k, d)) if isinstance(config, dict) else (
      lambda k, d=None: getattr(config, k, d))
  if num_classes is None:
    id2label = get("id2label") or {}
    num_classes = len(id2label) if id2label else int(get("num_labels", 1000) or 1000)
  if get("num_channels", 3) != 3:
    raise ValueError(f"only 3-channel ResNets are supported; got num_channels={get('num_channels')}")
  if get("hidden_act", "relu") != "relu":
    raise ValueError(f"only ReLU ResNets are supported; got hidden_act={get('hidden_act')!r}")
  return ResNet(depths=tuple(get("depths")), hidden_sizes=tuple(get("hidden_sizes")),
                embedding_size=int(get("embedding_size")), layer_type=get("layer_type"),
                num_classes=int(num_classes),
                downsample_in_first_stage=bool(get("downsample_in_first_stage", False)),
                downsample_in_bottleneck=bool(get("downsample_in_bottleneck", False)))
