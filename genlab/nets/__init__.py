"""Plain `nn.Module` networks; they know nothing about Lightning."""

from genlab.nets.base import Discriminator, Generator
from genlab.nets.conv import DCGANDiscriminator, DCGANGenerator, InfoGANDiscriminator, InfoGANGenerator
from genlab.nets.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Discriminator",
    "Generator",
    "InfoGANDiscriminator",
    "InfoGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
]
