"""What a VAE's test reports besides its ELBO: an importance-sampled likelihood, the KL per latent dimension and
the number of active units — the diagnostics VAE papers give and sample scores do not.

- `iwae_nll`: -log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2016), in nats per image:
  -log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x). It is an upper bound on the true negative log-likelihood that
  tightens as k grows (k = 1 is the negative ELBO in expectation), so k is part of the number's name.
  With the Bernoulli likelihood on grey-level (not binarized) MNIST this is not a proper likelihood and is not
  comparable with the binarized-MNIST figures of the literature (e.g. ~89.8 nats); with the continuous Bernoulli
  it is a density on [0, 1]^784.
- `kl_per_dimension`: KL(q(z_d|x) || N(0, 1)) for each latent dimension d; dimensions near 0 carry nothing.
- `active_units`: dimensions whose posterior mean varies across images, Cov_x(E_q[z_d]) > 0.01 (Burda et al.).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016


def gaussian_log_density(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) / logvar.exp()).sum(dim=-1)


def iwae_nll(mean: Tensor, logvar: Tensor, log_likelihood: Callable[[Tensor], Tensor], samples: int,
             generator: torch.Generator | None = None, chunk: int = 16) -> Tensor:
    """The k-sample importance-weighted estimate of -log p(x) per image (shape N).

    `mean`, `logvar` (N x D) describe q(z|x); `log_likelihood(z)` maps codes of shape (c, N, D) — c samples for
    each image — to log p(x|z) of shape (c, N). Samples are decoded `chunk` at a time to bound memory.
    """
    noise = torch.randn(samples, *mean.shape, generator=generator,
                        device=generator.device if generator is not None else mean.device)
    z = mean + noise.to(mean.device, mean.dtype) * (0.5 * logvar).exp()
    prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
    log_weights = torch.cat([log_likelihood(part) for part in z.split(chunk)]) + prior - gaussian_log_density(
        z, mean, logvar)
    return -(torch.logsumexp(log_weights.double(), dim=0) - math.log(samples))


def kl_per_dimension(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean_d, exp(logvar_d)) || N(0, 1)) for each image and dimension (N x D)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())


def active_units(first_moment: Tensor, second_moment: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many latent dimensions are active, from the posterior means' moments over a data set (E[m_d] and
    E[m_d²] per dimension, which sum across batches and processes): those whose variance exceeds `threshold`."""
    variance = (second_moment.double() - first_moment.double().pow(2)).clamp_min(0)
    return int((variance > threshold).sum())
