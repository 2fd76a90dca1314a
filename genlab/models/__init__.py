"""`LightningModule`s that train the networks of `genlab.nets`."""

from genlab.models.base import GenerativeModule, GenlabModule
from genlab.models.gan import GAN

__all__ = ["GAN", "GenerativeModule", "GenlabModule"]
