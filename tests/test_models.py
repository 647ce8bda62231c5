"""Backbones: ResNet converter round trip (HF layout), parameter subsets, CLIP wrapper (tiny)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from skmm_jax import models
from skmm_jax.models import convert, resnet
from skmm_jax.validation import SkmmError

TINY_HF = dict(depths=[1, 2], hidden_sizes=[8, 16], embedding_size=8, layer_type="basic",
               num_channels=3, hidden_act="relu", downsample_in_first_stage=False,
               downsample_in_bottleneck=False, model_type="resnet",
               id2label={str(i): f"c{i}" for i in range(5)})


# -- an independent description of the HF PyTorch ResNet (from transformers' modeling_resnet.py) --

def _hf_resnet_state_dict(cfg, rng, bottleneck_reduction=4):
  """Random tensors under the exact key names / shapes of HF ResNetForImageClassification."""
  sd = {}

  def conv_bn(prefix, cin, cout, k):
    sd[prefix + "convolution.weight"] = rng.normal(0, (2.0 / (cin * k * k)) ** 0.5,
                                                   (cout, cin, k, k)).astype(np.float32)
    sd[prefix + "normalization.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    sd[prefix + "normalization.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
    sd[prefix + "normalization.running_mean"] = rng.normal(0, 0.1, cout).astype(np.float32)
    sd[prefix + "normalization.running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    sd[prefix + "normalization.num_batches_tracked"] = np.array(7, np.int64)

  conv_bn("resnet.embedder.embedder.", 3, cfg["embedding_size"], 7)
  cin = cfg["embedding_size"]
  for s, (depth, cout) in enumerate(zip(cfg["depths"], cfg["hidden_sizes"])):
    for l in range(depth):
      stride = (2 if s > 0 else 1) if l == 0 else 1
      p = f"resnet.encoder.stages.{s}.layers.{l}."
      if cin != cout or stride != 1:
        conv_bn(p + "shortcut.", cin, cout, 1)
      if cfg["layer_type"] == "basic":
        conv_bn(p + "layer.0.", cin, cout, 3)
        conv_bn(p + "layer.1.", cout, cout, 3)
      else:
        r = cout // bottleneck_reduction
        conv_bn(p + "layer.0.", cin, r, 1)
        conv_bn(p + "layer.1.", r, r, 3)
        conv_bn(p + "layer.2.", r, cout, 1)
      cin = cout
  n = len(cfg["id2label"])
  sd["classifier.1.weight"] = rng.normal(0, 0.1, (n, cin)).astype(np.float32)
  sd["classifier.1.bias"] = rng.normal(0, 0.1, n).astype(np.float32)
  return sd


def _reference_forward(sd, cfg, x_nchw):
  """PyTorch-semantics forward straight from the state dict (NCHW, OIHW), no Flax."""
  hp = jax.lax.Precision.HIGHEST

  def conv_bn(prefix, x, stride, relu):
    w = jnp.asarray(sd[prefix + "convolution.weight"])
    p = w.shape[-1] // 2
    y = jax.lax.conv_general_dilated(x, w, (stride, stride), [(p, p), (p, p)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=hp)
    g = lambda n: jnp.asarray(sd[prefix + "normalization." + n])[None, :, None, None]
    y = (y - g("running_mean")) / jnp.sqrt(g("running_var") + 1e-5) * g("weight") + g("bias")
    return jax.nn.relu(y) if relu else y

  x = conv_bn("resnet.embedder.embedder.", x_nchw, 2, True)
  x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 3, 3), (1, 1, 2, 2),
                            [(0, 0), (0, 0), (1, 1), (1, 1)])
  for s, depth in enumerate(cfg["depths"]):
    for l in range(depth):
      stride = (2 if s > 0 else 1) if l == 0 else 1
      p = f"resnet.encoder.stages.{s}.layers.{l}."
      res = conv_bn(p + "shortcut.", x, stride, False) if p + "shortcut.convolution.weight" in sd else x
      y = conv_bn(p + "layer.0.", x, stride, True)
      y = conv_bn(p + "layer.1.", y, 1, False)
      x = jax.nn.relu(y + res)
  feats = x.mean(axis=(2, 3))
  return feats @ jnp.asarray(sd["classifier.1.weight"]).T + jnp.asarray(sd["classifier.1.bias"])


def _write_checkpoint(tmp_path, cfg, sd):
  d = tmp_path / "resnet-hf"
  d.mkdir(exist_ok=True)
  (d / "config.json").write_text(json.dumps(cfg))
  save_file(sd, str(d / "model.safetensors"))
  return str(d)


def test_resnet18_architecture_and_param_count():
  m = resnet.resnet18(1000)
  v = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(v["params"]))
  assert n == 11_689_512  # torchvision / HF ResNet18
  assert m.last_conv3x3_path() == ("stages_3_layers_1", "layer_1", "convolution", "kernel")


def test_converter_round_trip_matches_reference_forward(tmp_path):
  sd = _hf_resnet_state_dict(TINY_HF, np.random.default_rng(0))
  path = _write_checkpoint(tmp_path, TINY_HF, sd)
  module, variables, report = convert.load_hf_resnet(path, return_report=True)
  # every checkpoint tensor is accounted for: loaded or (num_batches_tracked) ignored
  assert set(report.loaded) | set(report.ignored) == set(sd)
  assert not set(report.loaded) & set(report.ignored) and not report.replaced
  assert all(k.endswith("num_batches_tracked") for k in report.ignored)
  n_leaves = len(jax.tree_util.tree_leaves(variables))
  assert n_leaves == len(report.loaded)
  x = np.random.default_rng(1).normal(size=(2, 3, 40, 40)).astype(np.float32)
  ref = _reference_forward(sd, TINY_HF, jnp.asarray(x))
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-4, rtol=1e-4)


def test_converter_rejects_missing_unexpected_and_misshaped(tmp_path):
  sd = _hf_resnet_state_dict(TINY_HF, np.random.default_rng(0))
  module = resnet.from_hf_config(TINY_HF)
  bad = dict(sd)
  del bad["resnet.encoder.stages.1.layers.1.layer.1.convolution.weight"]
  with pytest.raises(SkmmError, match="missing.*stages.1.layers.1.layer.1.convolution.weight"):
    convert.convert_resnet_state_dict(bad, module)
  bad = dict(sd, **{"resnet.encoder.stages.1.layers.1.extra.weight": np.zeros(3, np.float32)})
  with pytest.raises(SkmmError, match="unexpected.*extra.weight"):
    convert.convert_resnet_state_dict(bad, module)
  bad = dict(sd)
  bad["resnet.embedder.embedder.normalization.bias"] = np.zeros(9, np.float32)
  with pytest.raises(SkmmError, match="shape mismatch.*embedder.normalization.bias"):
    convert.convert_resnet_state_dict(bad, module)
  # a deeper module than the checkpoint: missing keys, not a silent random init
  with pytest.raises(SkmmError, match="missing"):
    convert.convert_resnet_state_dict(sd, resnet.from_hf_config(dict(TINY_HF, depths=[2, 2])))


def test_converter_new_head_and_absent_weights(tmp_path):
  sd = _hf_resnet_state_dict(TINY_HF, np.random.default_rng(0))
  path = _write_checkpoint(tmp_path, TINY_HF, sd)
  module, variables, report = convert.load_hf_resnet(path, num_classes=3, return_report=True)
  assert variables["params"]["classifier"]["kernel"].shape == (16, 3)
  assert set(report.replaced) == {"classifier.1.weight", "classifier.1.bias"}
  assert set(report.loaded) | set(report.ignored) | set(report.replaced) == set(sd)
  with pytest.raises(SkmmError, match="not available locally.*huggingface-cli download"):
    convert.load_hf_resnet("nobody/no-such-resnet")
  # the bundle loader defaults to the paper's checkpoint, never to a silent random init
  with pytest.raises(SkmmError, match="'microsoft/resnet-18' are not available locally"):
    models.load_bundle("resnet18", num_classes=10)
  b = models.load_bundle("resnet18", num_classes=3, weights=path, seed=1)
  assert b.feature_dim == 16 and b.variables["params"]["classifier"]["kernel"].shape == (16, 3)
  np.testing.assert_array_equal(b.variables["params"]["embedder"]["convolution"]["kernel"],
                                variables["params"]["embedder"]["convolution"]["kernel"])
  with pytest.raises(SkmmError, match="no such file"):
    convert.load_hf_resnet(str(tmp_path / "nowhere" / "x.safetensors"))


def test_converter_matches_torch_forward(tmp_path):
  torch = pytest.importorskip("torch")
  from transformers import ResNetConfig, ResNetForImageClassification
  torch.manual_seed(0)
  cfg = ResNetConfig(**{k: v for k, v in TINY_HF.items() if k != "model_type"})
  pt = ResNetForImageClassification(cfg).eval()
  for mod in pt.modules():  # non-trivial running statistics
    if isinstance(mod, torch.nn.BatchNorm2d):
      mod.running_mean.uniform_(-0.1, 0.1)
      mod.running_var.uniform_(0.5, 1.5)
  sd = {k: v.detach().numpy() for k, v in pt.state_dict().items()}
  module, variables = convert.load_hf_resnet(_write_checkpoint(tmp_path, TINY_HF, sd))
  x = np.random.default_rng(1).normal(size=(2, 3, 40, 40)).astype(np.float32)
  with torch.no_grad():
    ref = pt(torch.from_numpy(x)).logits.numpy()
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4, rtol=1e-4)


def test_bundle_subsets_and_split_merge():
  b = models.resnet_tiny_bundle(num_classes=3, seed=0)
  params = b.variables["params"]
  ft2 = b.subset("ft2")
  sel, rest = models.split_params(params, ft2)
  assert set(sel) == {("classifier", "kernel"), ("classifier", "bias"),
                      ("stages_1_layers_0", "layer_1", "convolution", "kernel")}
  assert set(models.split_params(params, b.subset("ft1"))[0]) == {("classifier", "kernel"),
                                                                  ("classifier", "bias")}
  merged = models.merge_params(sel, rest)
  assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(params)
  # predicates accept jax key paths with or without the `params` collection
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(b.variables)[0] if ft2(p)]
  assert len(paths) == 3
  mask = models.subset_mask(params, ft2)
  assert sum(jax.tree_util.tree_leaves(mask)) == 3
  with pytest.raises(SkmmError, match="unknown parameter subset"):
    b.subset("ft3")
  with pytest.raises(SkmmError, match="selects no parameter"):
    models.split_params(params, models.make_predicate([("visual_projection",)]))
  # per-example FT-2 gradients through the bundle (inference-mode batch norm)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
  y = jnp.arange(4) % 3

  def loss(s, xi, yi):
    v = dict(b.variables, params=models.merge_params(s, rest))
    logits = b.apply_logits(v, xi[None])[0]
    return -jax.nn.log_softmax(logits)[yi]

  g = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(sel, x, y)
  assert g[("classifier", "kernel")].shape == (4, 16, 3)
  assert np.isfinite(np.asarray(g[("stages_1_layers_0", "layer_1", "convolution", "kernel")])).all()
  # features feed the head: logits == head(features)
  f = b.apply_features(b.variables, x)
  np.testing.assert_allclose(
      np.asarray(f @ params["classifier"]["kernel"] + params["classifier"]["bias"]),
      np.asarray(b.apply_logits(b.variables, x)), atol=1e-5)


# -- CLIP (tiny random config, no downloads) --

@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
  from transformers import FlaxCLIPModel
  from skmm_jax.models import clip
  d = tmp_path_factory.mktemp("clip-tiny")
  config = clip.tiny_config()
  hf = FlaxCLIPModel(config, _do_init=False)
  shapes = {"input_ids": jnp.zeros((1, 4), jnp.int32), "pixel_values": jnp.zeros((1, 32, 32, 3)),  # NHWC inside
            "attention_mask": jnp.ones((1, 4), jnp.int32), "position_ids": jnp.zeros((1, 4), jnp.int32)}
  params = jax.jit(hf.module.init)(jax.random.key(0, impl="rbg"), **shapes)["params"]
  hf.save_pretrained(str(d), params=params)
  return str(d)


def test_clip_bundle_loads_image_side_and_normalises(tiny_clip_dir):
  from transformers import FlaxCLIPModel
  b = models.clip_bundle(num_classes=4, weights=tiny_clip_dir, seed=0)
  assert b.feature_dim == 8 and b.preprocess.crop == 32
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 32, 32, 3)), jnp.float32)
  f = np.asarray(b.apply_features(b.variables, x))
  np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
  hf, params = FlaxCLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True, _do_init=False)
  ref = np.asarray(jax.jit(lambda p, px: hf.get_image_features(pixel_values=px, params=p))(
      params, jnp.transpose(x, (0, 3, 1, 2))))
  ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
  np.testing.assert_allclose(f, ref, atol=1e-5)
  assert b.apply_logits(b.variables, x).shape == (3, 4)
  sel, _ = models.split_params(b.variables["params"], b.subset("ft2"))
  assert set(sel) == {("visual_projection", "kernel"), ("classifier", "kernel"),
                      ("classifier", "bias")}
  # the weights fingerprint sees every weight
  v2 = jax.tree_util.tree_map(lambda a: a, b.variables)
  v2["params"]["vision_model"]["post_layernorm"]["bias"] = v2["params"]["vision_model"][
      "post_layernorm"]["bias"] + 1e-3
  assert models.weights_fingerprint(v2) != b.weights_fingerprint


def test_clip_absent_and_mismatched_weights(tmp_path, tiny_clip_dir):
  from skmm_jax.models import clip
  with pytest.raises(SkmmError, match="openai/clip-vit-base-patch32.*not available locally"):
    models.clip_bundle(weights="openai/clip-vit-base-patch32")
  d = tmp_path / "vision-only"  # a CLIPVisionModel checkpoint has no visual projection
  clip.tiny_config().vision_config.save_pretrained(str(d))
  with pytest.raises(SkmmError, match="not a full CLIPModel checkpoint.*clip_vision_model"):
    models.clip_bundle(weights=str(d))
  # a checkpoint whose tensors disagree with its config: a named error, never a random init
  cfg = json.loads(open(os.path.join(tiny_clip_dir, "config.json")).read())
  cfg["vision_config"]["intermediate_size"] = 48
  bad = tmp_path / "bad-clip"
  bad.mkdir()
  (bad / "config.json").write_text(json.dumps(cfg))
  os.symlink(os.path.join(tiny_clip_dir, "flax_model.msgpack"), bad / "flax_model.msgpack")
  with pytest.raises(SkmmError, match="could not load CLIP weights.*fc1"):
    models.clip_bundle(weights=str(bad))


def test_converter_accounts_for_every_key_of_the_resnet18_layout(tmp_path):
  cfg = dict(TINY_HF, depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64,
             id2label={str(i): str(i) for i in range(1000)})
  sd = _hf_resnet_state_dict(cfg, np.random.default_rng(0))
  assert len(sd) == 122  # 20 convs, 20 batch norms x 5 entries, the classifier weight and bias
  module = resnet.from_hf_config(cfg)
  variables, report = convert.convert_resnet_state_dict(sd, module)
  assert len(report.loaded) == 102 and len(report.ignored) == 20 and not report.replaced
  assert module.num_classes == 1000
  np.testing.assert_array_equal(
      variables["params"]["stages_3_layers_1"]["layer_1"]["convolution"]["kernel"],
      sd["resnet.encoder.stages.3.layers.1.layer.1.convolution.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      variables["batch_stats"]["stages_2_layers_0"]["shortcut"]["normalization"]["var"],
      sd["resnet.encoder.stages.2.layers.0.shortcut.normalization.running_var"])
  n = sum(v.size for v in jax.tree_util.tree_leaves(variables["params"]))
  assert n == 11_689_512
