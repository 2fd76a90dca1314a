"""`LightningModule`s that train the networks of `genlab.nets`."""

from genlab.models.base import GenerativeModule
from genlab.models.beta_vae import BetaVAE
from genlab.models.classifier import Classifier
from genlab.models.dae import DenoisingAutoencoder
from genlab.models.gan import GAN
from genlab.models.vae import VAE
from genlab.training import TrainingModule

__all__ = ["GAN", "VAE", "BetaVAE", "Classifier", "DenoisingAutoencoder", "GenerativeModule", "TrainingModule"]
