"""Inception-v3 IS, FID and KID from one forward pass per image, through torch-fidelity's feature extractor.

Choices, recorded with every result (`InceptionMetrics.settings`):
- Network and weights: torch-fidelity's `FeatureExtractorInceptionV3` with the TF 2015-12-05 weights file
  `weights-inception-2015-12-05-6726825d.pth`, the network of the original TF IS/FID code. The file is read
  from `weights_path`, else from the torch hub cache (`$TORCH_HOME/hub/checkpoints/`), else downloaded there
  once (with a timeout). Without it and without network the run stops in `setup` with one line naming the
  place to put it; it never hangs and never skips the metric.
- Resize: bilinear to 299x299 exactly as TensorFlow 1.x did (torch-fidelity's
  `interpolate_bilinear_2d_like_tensorflow1x`), no antialiasing. torchmetrics' default since 1.8 antialiases,
  which on 28/32 px images no longer matches torch-fidelity or the published TF numbers.
- Input: the network takes uint8 images. Images in [-1, 1] become the bytes a PNG of the sample holds (the
  arithmetic of torchvision's `save_image`, which `genlab predict` uses), and exactly the original bytes of real
  images (which were read as bytes).
  torchmetrics' `normalize=True` truncates (x·255).byte() instead, which shifts every real pixel down by one
  level whenever float round-off lands just below an integer. Grayscale is repeated to 3 channels.
- IS from the 1008 `logits_unbiased` (torch-fidelity's choice, matching the original code), FID and KID from
  the `fid_features`-d pool features (2048 by default).
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from genlab.atomic_files import file_sha256
from genlab.errors import GenlabError, first_line
from genlab.metrics.scores import FrechetDistance, InceptionScore, KernelDistance, ManifoldScores
from genlab.metrics.suite import (
    EvaluationPlan,
    MetricSuite,
    SuiteResult,
    check_manifold_counts,
    manifold_settings,
)

WEIGHTS_SHA256_PREFIX = "6726825d"  # the official file's name carries the first 8 hex digits of its SHA-256
WEIGHTS_NAME = f"weights-inception-2015-12-05-{WEIGHTS_SHA256_PREFIX}.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_NAME}"
INCEPTION_CLASSES = 1008
FORWARD_CHUNK = 64  # images per Inception forward pass, whatever batch the caller feeds
RESIZE = "bilinear to 299x299, TensorFlow-1.x-exact (torch-fidelity), no antialiasing"


def default_weights_path() -> Path:
    """Where torch hub (and so torch-fidelity and torchmetrics) look for the weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def _download(url: str, target: Path, timeout: float) -> None:
    """Fetch into a temporary file beside `target`, then move it into place: no half-written weights file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (urllib.request.urlopen(url, timeout=timeout) as response,
          tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as partial):
        try:
            while chunk := response.read(1 << 20):
                partial.write(chunk)
        except BaseException:
            os.unlink(partial.name)
            raise
    os.replace(partial.name, target)


def resolve_inception_weights(weights_path: str | None = None, download: bool = True, timeout: float = 30.0) -> Path:
    """The weights file to use, downloading it into the torch hub cache if allowed; else one GenlabError line."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise GenlabError(
                f"Inception weights file {path} does not exist: put {WEIGHTS_NAME} ({WEIGHTS_URL}) there, or drop"
                f" weights_path to use {default_weights_path()}"
            )
        return path
    path = default_weights_path()
    if path.is_file():
        return path
    reason = "download is off"
    if download:
        try:
            _download(WEIGHTS_URL, path, timeout)
            return path
        except Exception as error:  # noqa: BLE001 - offline, DNS, timeouts, HTTP: one end
            reason = f"download failed: {first_line(error, 100)}"
    raise GenlabError(
        f"Inception-v3 weights not found ({reason}): put {WEIGHTS_NAME} (from {WEIGHTS_URL}) in {path.parent}/,"
        " or set weights_path to a copy of it"
    )


def check_official_weights(path: Path, sha256: str, allow_unofficial: bool) -> bool:
    """Whether `path` holds the official TF 2015-12-05 weights (its SHA-256 starts with the prefix in the official
    name); other weights stop the run in one line unless explicitly allowed, since their scores are not FID/IS."""
    official = sha256.startswith(WEIGHTS_SHA256_PREFIX)
    if not official and not allow_unofficial:
        raise GenlabError(
            f"{path} is not the official Inception weights file (its SHA-256 starts with {sha256[:8]}, the official"
            f" {WEIGHTS_NAME} with {WEIGHTS_SHA256_PREFIX}): replace it with {WEIGHTS_URL}, or set"
            " allow_unofficial_weights: true (the record then says the scores are not comparable with published ones)"
        )
    return official


def to_bytes(images: Tensor) -> Tensor:
    """Images in [-1, 1] → uint8 in [0, 255], exactly the bytes `genlab predict` writes to PNG (torchvision's
    `save_image` of (x + 1) / 2: x·255 + 0.5, truncated, i.e. halves round up); gray → 3 channels."""
    intensities = images.float().add(1).div(2).clamp(0, 1)
    pixels = intensities.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3 on images in [-1, 1]: (pool features, 1008 unbiased logits) per image."""

    def __init__(self, weights: Path, feature_layer: str = "2048") -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:  # a cheap, safe look first: torch-fidelity itself unpickles the file with weights_only=False
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "fc.weight" not in state:
                raise ValueError("no Inception-v3 state dict inside")
            del state
            self.network = FeatureExtractorInceptionV3("inception-v3-compat", [feature_layer, "logits_unbiased"],
                                                       feature_extractor_weights_path=os.fspath(weights))
        except Exception as error:  # noqa: BLE001 - any failure to load means an unusable file
            reason = first_line(error)
            raise GenlabError(
                f"{weights} is not a usable Inception-v3 weights file ({reason}): replace it with {WEIGHTS_NAME}"
                f" from {WEIGHTS_URL}"
            ) from None

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.network(to_bytes(images))
        return features, logits


class InceptionMetrics(MetricSuite):
    """Inception-v3 IS, FID and KID (see the module docstring for every choice they rest on).

    Args:
        weights_path: the weights file; default: the torch hub cache, downloading into it once if `download`.
        download: allow that download (30 s network timeout).
        is_splits: IS splits (0 turns IS off). IS cannot exceed the samples per split, so each split needs at least
            1008 samples (the network's classes): 10,080 samples for 10 splits, 2 splits for 3,000 samples.
        fid_features: the pool layer FID and KID use (torch-fidelity's 64, 192, 768 or 2048).
        kid_subsets, kid_subset_size: KID's random subsets (0 subsets turns KID off); each side needs at least
            `kid_subset_size` samples.
        seed: seeds the IS split permutation and the KID subset draws (2020 as in torch-fidelity).
        allow_unofficial_weights: accept a weights file whose SHA-256 does not match the official one (for
            tests and timing); every record then says `"official_weights": false`.
        manifold_k: k of precision, recall, density and coverage on the `fid_features`-d pool features (null: off).
            Kynkäänniemi et al. used VGG-16 features, so these are not their published numbers.
        scores: registered feature scores to compute on the pool features too (e.g. `[mean_distance]`).
    """

    name = "inception"

    def __init__(
        self,
        weights_path: str | None = None,
        download: bool = True,
        is_splits: int = 10,
        fid_features: Literal[64, 192, 768, 2048] = 2048,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int = 2020,
        allow_unofficial_weights: bool = False,
        manifold_k: int | None = None,
        scores: list[str] | None = None,
    ) -> None:
        super().__init__()
        if is_splits < 0 or kid_subsets < 0 or (manifold_k is not None and manifold_k < 1):
            raise GenlabError("InceptionMetrics is_splits and kid_subsets must be 0 (off) or more, manifold_k 1 or"
                              " more (null: off)")
        self.weights_path, self.download = weights_path, download
        self.is_splits, self.fid_features, self.seed = is_splits, int(fid_features), seed
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.allow_unofficial_weights = allow_unofficial_weights
        self.manifold_k, self.scores = manifold_k, list(scores or [])
        self.manifold_counts: dict[str, int] | None = None
        self.weights: Path | None = None
        self.weights_sha256: str | None = None
        self.official_weights: bool | None = None

    def prepare(self, plan: EvaluationPlan) -> None:
        if len(plan.data_shape) != 3 or plan.data_shape[0] not in (1, 3):
            raise GenlabError(f"Inception metrics need 1- or 3-channel images, but the data is {plan.data_shape}")
        self._check_counts(plan)
        if self.weights is None:
            weights = resolve_inception_weights(self.weights_path, self.download)
            sha256 = file_sha256(weights)
            self.official_weights = check_official_weights(weights, sha256, self.allow_unofficial_weights)
            self.features = InceptionFeatures(weights, str(self.fid_features))
            self.weights, self.weights_sha256 = weights, sha256[:12]
        if self.is_splits:
            self.inception_score = InceptionScore(INCEPTION_CLASSES, self.is_splits, self.seed)
        self.frechet = FrechetDistance(self.fid_features)
        if self.kid_subsets:
            self.kernel = KernelDistance(self.fid_features, self.kid_subsets, self.kid_subset_size, self.seed)
        if self.manifold_k:
            self.manifold = ManifoldScores(self.fid_features, self.manifold_k)
            self.manifold_counts = {"generated": plan.num_fake, "real": plan.num_real}
        self.prepare_feature_scores(self.fid_features, plan)

    def _check_counts(self, plan: EvaluationPlan) -> None:
        counts = f"{plan.num_fake} generated and {plan.num_real} real ({plan.real_split}) images"
        if self.is_splits and plan.num_fake < self.is_splits * INCEPTION_CLASSES:
            raise GenlabError(
                f"Inception IS over {self.is_splits} splits needs {INCEPTION_CLASSES} samples per split (IS cannot"
                f" exceed the samples per split), i.e. {self.is_splits * INCEPTION_CLASSES}, but the plan has"
                f" {plan.num_fake}: raise num_samples or lower is_splits to"
                f" {max(plan.num_fake // INCEPTION_CLASSES, 0)} (0 turns IS off)"
            )
        if min(plan.num_fake, plan.num_real) <= self.fid_features:
            raise GenlabError(
                f"FID on {self.fid_features} features needs more than {self.fid_features} images per side, but the plan"
                f" has {counts}: use more samples (or fid_features 64/192/768, recorded with the result)"
            )
        if self.kid_subsets and min(plan.num_fake, plan.num_real) < self.kid_subset_size:
            raise GenlabError(
                f"KID subsets of {self.kid_subset_size} need that many images per side, but the plan has {counts}:"
                " lower kid_subset_size or use more samples"
            )
        check_manifold_counts(self.manifold_k, plan)

    def update(self, images: Tensor, real: bool, labels: Tensor | None = None) -> None:
        for chunk in images.split(FORWARD_CHUNK):  # 299x299 activations: ~30 MB per image
            self._update(chunk, real)

    def _update(self, images: Tensor, real: bool) -> None:
        features, logits = self.features(images)
        self.frechet.update(features, real)
        if self.kid_subsets:
            self.kernel.update(features, real)
        if self.manifold_k:
            self.manifold.update(features, real)
        self.update_feature_scores(features, real)
        if self.is_splits and not real:
            self.inception_score.update(logits.double().softmax(1))

    def compute(self) -> SuiteResult:
        scores = {f"{self.name}/fid": float(self.frechet.compute())}
        if self.is_splits:
            mean, std = self.inception_score.compute()
            scores |= {f"{self.name}/is": float(mean), f"{self.name}/is_std": float(std)}
        if self.kid_subsets:
            mean, std = self.kernel.compute()
            scores |= {f"{self.name}/kid": float(mean), f"{self.name}/kid_std": float(std)}
        if self.manifold_k:
            scores |= {f"{self.name}/{name}": float(value) for name, value in self.manifold.compute().items()}
        return SuiteResult(scores | self.feature_score_results(), {})

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "network": "Inception-v3 via torch-fidelity FeatureExtractorInceptionV3, "
                       + ("the official TF 2015-12-05 weights" if self.official_weights
                          else "UNOFFICIAL weights: not comparable with published FID/IS"),
            "weights": os.fspath(self.weights) if self.weights else None,
            "weights_sha256": self.weights_sha256,
            "official_weights": self.official_weights,
            "resize": RESIZE,
            "input": "uint8 as a PNG of the sample stores it (torchvision save_image: (x + 1) / 2 * 255 + 0.5,"
                     " truncated); grayscale repeated to 3 channels",
            "fid": f"Frechet distance of Gaussians fitted to the {self.fid_features}-d pool features (float64,"
                   " unbiased covariances)",
        }
        if self.is_splits:
            settings["is"] = (f"exp(E KL(p(y|x) || p(y))) on the 1008 logits_unbiased; mean and population std (ddof 0)"
                              f" over {self.is_splits} splits cut after numpy RandomState({self.seed}).permutation")
        if self.kid_subsets:
            settings["kid"] = (f"unbiased MMD^2, kernel (x.y/d + 1)^3, mean and population std over {self.kid_subsets}"
                               f" subsets of {self.kid_subset_size} (seed {self.seed}), torch-fidelity's code")
        settings |= manifold_settings(self.manifold_k, f"the {self.fid_features}-d Inception pool features",
                                      self.manifold_counts)
        if self.scores:
            settings["feature_scores"] = self.feature_score_settings()
        return settings


def random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write a randomly initialised weights file in the layout of the real one (same keys and shapes).

    For tests and timing only: the scores it gives mean nothing. Convolutions get He-normal weights so
    activations keep their scale through the 94 layers (PyTorch's default init shrinks them to ~1e-8).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
            return None  # keep the fresh initialisation

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({}, path)  # the constructor insists on reading a file
    network = _Unloaded("random", ["2048"], feature_extractor_weights_path=os.fspath(path))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / module.in_features**0.5)
                module.bias.zero_()
    torch.save(network.state_dict(), path)
    return path
