"""Data: the synthetic GMM generator and the paper's real datasets.

Modules (imported explicitly; nothing heavy is imported here):
  * `skmm_jax.data.synthetic`: the GMM data of the synthetic experiment (spec section 4);
  * `skmm_jax.data.vision`: CIFAR-10 / cars196 (tensorflow-datasets), UTKFace (folder), sklearn
    digits as random-access image sources; seeded train/validation split; numpy batching;
  * `skmm_jax.data.preprocess`: resize (bicubic) + centre crop on the host, the model's
    normalisation on device.
"""
