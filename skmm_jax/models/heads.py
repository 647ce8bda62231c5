"""Linear classification / regression heads shared by every backbone.

The head is a single Dense layer named `classifier` inside each backbone module, so that
its parameters sit at `params/classifier/{kernel,bias}` for every backbone (see
`skmm_jax.models.PARAM_SUBSETS`). It can also be used alone on cached features (LP / FT-1).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from skmm_jax.models.heads import LinearHead
  >>> head = LinearHead(num_outputs=10)
  >>> v = head.init(jax.random.PRNGKey(0), jnp.ones((2, 512)))
  >>> head.apply(v, jnp.ones((2, 512))).shape
  (2, 10)
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class LinearHead(nn.Module):
  """y = x W + b on (B, d) features.

  Attributes:
    num_outputs: number of classes (or 1 for regression).
    use_bias: whether to add the bias b.
    zero_init: initialise W (and b) to zero, as for a fresh linear probe; otherwise
      W ~ N(0, 1/d) (untruncated LeCun normal) and b = 0.
  """
  num_outputs: int
  use_bias: bool = True
  zero_init: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    init = nn.initializers.zeros if self.zero_init else nn.initializers.variance_scaling(
        1.0, "fan_in", "normal")
    kernel = self.param("kernel", init, (x.shape[-1], self.num_outputs), jnp.float32)
    y = jnp.dot(x, kernel.astype(x.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.num_outputs,), jnp.float32)
      y = y + bias.astype(x.dtype)
    return y
