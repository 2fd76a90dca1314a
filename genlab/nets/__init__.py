"""Plain `nn.Module` networks; they know nothing about Lightning."""

from genlab.nets.autoencoder import MLPAutoencoder
from genlab.nets.base import Discriminator, Generator
from genlab.nets.classifier import ClassifierNet, ConvClassifier, MLPClassifier
from genlab.nets.conv import DCGANDiscriminator, DCGANGenerator, InfoGANDiscriminator, InfoGANGenerator
from genlab.nets.mlp import MLPDiscriminator, MLPGenerator
from genlab.nets.toy import ToyDiscriminator, ToyGenerator
from genlab.nets.vae import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, VAEDecoder, VAEEncoder

__all__ = [
    "ClassifierNet",
    "ConvClassifier",
    "ConvDecoder",
    "ConvEncoder",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Discriminator",
    "Generator",
    "InfoGANDiscriminator",
    "InfoGANGenerator",
    "MLPAutoencoder",
    "MLPClassifier",
    "MLPDecoder",
    "MLPDiscriminator",
    "MLPEncoder",
    "MLPGenerator",
    "ToyDiscriminator",
    "ToyGenerator",
    "VAEDecoder",
    "VAEEncoder",
]
