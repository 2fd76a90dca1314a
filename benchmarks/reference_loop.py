"""The reference notebook's VAE and IS classifier as a plain PyTorch loop, and the cross table of IS scores.

    python benchmarks/reference_loop.py train --seeds 0,1,2            # minutes per seed and part
    python benchmarks/reference_loop.py gan --seeds 0 --epochs 10      # the vanilla GAN: grids per epoch
    python benchmarks/reference_loop.py dcgan --seeds 0 --epochs 5 \
        --genlab-classifier lightning_logs/classifier_mnist_reference \
        --record docs/results/notebook-loop-dcgan.json                  # the DCGAN's own loop, its IS on cell [28]
    python benchmarks/reproduce.py --table-only                         # RESULTS.md shows the records written
    python benchmarks/reference_loop.py score --genlab-vae lightning_logs/vae_mnist/version_0 \
        --genlab-classifier lightning_logs/classifier_mnist_reference \
        --genlab-classifier lightning_logs/classifier_mnist --record docs/results/notebook-loop-vae.json

`train` runs the code of reference/001 cells [247]-[256] as written there (MLP VAE with z = 20, encoder fed
2x - 1, BCE + KL, Adam 1e-3, batch 128, 20 epochs; MLP classifier 784-512-512-10 with F.dropout, RMSprop 1e-3
alpha 0.9, 20 epochs), on all 60,000 MNIST training images read from the idx files of $GENLAB_DATA_DIR.
`score` prints the notebook's IS (N(0, I) samples, one split, +1e-10) of every VAE (the loop's, and genlab
`vae_mnist` runs) under every classifier (the loop's with dropout off, and genlab classifier runs), for the same
latents. `--record FILE` also writes what was printed as a JSON record (networks by SHA-256, protocol, machine,
commit): `benchmarks/reproduce.py` writes RESULTS.md's notebook-loop sections from those records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.atomic_files import file_sha256, write_bytes
from genlab.data.base import resolve_data_dir
from genlab.data.idx import read_idx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reproduce.py, beside this file
from reproduce import source_version

Z_DIM = 20


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 128),
                                                  nn.Linear(128, 2 * Z_DIM))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.fc4(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))))
        return out[:, :Z_DIM], out[:, Z_DIM:]


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(Z_DIM, 400), nn.Linear(400, 600), nn.Linear(600, 800),
                                                  nn.Linear(800, 784))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc4(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(z)))))))


class MLPClassifier(nn.Module):
    """The notebook's classifier; `dropout_at_eval` keeps its F.dropout quirk (active even after .eval())."""

    def __init__(self, dropout_at_eval: bool = True) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)
        self.dropout_at_eval = dropout_at_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = self.training or self.dropout_at_eval
        x = F.dropout(F.relu(self.fc1(torch.flatten(x, 1))), 0.2, training=drop)
        return self.fc3(F.dropout(F.relu(self.fc2(x)), 0.2, training=drop))


def mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    raw = resolve_data_dir(None) / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte").float().div(255).view(-1, 784)
    return images, read_idx(raw / f"{prefix}-labels-idx1-ubyte").long()


def reference_is(probs: torch.Tensor, eps: float = 1e-10) -> float:
    """The notebook's cell [261]: one split, exp(mean sum p (log(p + eps) - log(p_y + eps)))."""
    p_y = probs.mean(0, keepdim=True)
    return float(torch.exp((probs * (torch.log(probs + eps) - torch.log(p_y + eps))).sum(1).mean()))


def write_record(path: Path | None, content: dict) -> None:
    """The printed figures as a record, with what they rest on (machine, torch, commit, the command)."""
    if path is None:
        return
    record = {"command": " ".join(["python benchmarks/reference_loop.py", *sys.argv[1:]]),
              "genlab_commit": source_version(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), **content}
    write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
    print(f"wrote {path}", flush=True)


def train(seed: int, out: Path, epochs: int) -> None:
    torch.manual_seed(seed)
    images, labels = mnist("train")
    encoder, decoder = Encoder(), Decoder()
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in torch.randperm(len(images)).split(128):
            x = images[batch]
            mean, logvar = encoder(2 * x - 1)
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
            recon = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(1)
            kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp(), 1)
            loss = torch.mean(recon + kl)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"seed {seed} VAE epoch {epoch + 1}/{epochs}: batch loss {loss.item():.2f}"
              f" ({time.perf_counter() - start:.0f} s)", flush=True)
    classifier = MLPClassifier()
    optimizer = torch.optim.RMSprop(classifier.parameters(), lr=1e-3, alpha=0.9)
    for epoch in range(epochs):
        classifier.train()
        for batch in torch.randperm(len(images)).split(128):
            loss = F.cross_entropy(classifier(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_images, test_labels = mnist("test")
    classifier.eval()
    with torch.no_grad():
        accuracy = float((classifier(test_images).argmax(1) == test_labels).float().mean())
    print(f"seed {seed} classifier: test accuracy {accuracy:.4f} with the notebook's evaluation-time dropout",
          flush=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"decoder": decoder.state_dict(), "classifier": classifier.state_dict()}, out / f"seed{seed}.pt")


def genlab_decoder(run: Path) -> nn.Module:
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    decoder = Decoder()
    names = {"0": "fc1", "2": "fc2", "4": "fc3", "6": "fc4"}  # genlab's MLPDecoder: Linear/ReLU in a Sequential
    decoder.load_state_dict({f"{names[key.split('.')[2]]}.{key.split('.')[3]}": value for key, value in state.items()
                             if key.startswith("decoder.net.")})
    return decoder


@torch.no_grad()
def score(out: Path, genlab_vaes: list[Path], genlab_classifiers: list[Path], samples: list[int],
          record: Path | None = None) -> None:
    from genlab.metrics.classifier_checkpoint import load_classifier

    decoders: dict[str, nn.Module] = {}
    classifiers: dict[str, object] = {}
    networks: dict[str, dict] = {}  # name -> what it is and its weights' SHA-256 prefix
    for path in sorted(out.glob("seed*.pt")):
        state = torch.load(path, weights_only=True)
        decoders[f"loop VAE {path.stem}"] = Decoder()
        decoders[f"loop VAE {path.stem}"].load_state_dict(state["decoder"])
        classifier = MLPClassifier(dropout_at_eval=False)
        classifier.load_state_dict(state["classifier"])
        classifiers[f"loop MLP {path.stem}"] = classifier.eval()
        sha = file_sha256(path)[:12]  # one file holds the seed's VAE and MLP
        for part in ("VAE", "MLP"):
            networks[f"loop {part} {path.stem}"] = {"kind": f"loop {part}", "sha256": sha}
    for run in genlab_vaes:
        decoders[f"genlab {run}"] = genlab_decoder(run)
        networks[f"genlab {run}"] = {"kind": "genlab VAE",
                                     "sha256": file_sha256(run / "checkpoints" / "last.ckpt")[:12]}
    for folder in genlab_classifiers:
        loaded = load_classifier(folder)
        network = loaded.network
        classifiers[f"genlab {folder}"] = lambda x01, network=network: network(x01.view(-1, 1, 28, 28) * 2 - 1)
        networks[f"genlab {folder}"] = {"kind": f"genlab {type(network).__name__}", "sha256": loaded.sha256}
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; columns: " + " | ".join(classifiers))
    cells = []
    for count in samples:
        z = torch.randn(count, Z_DIM, generator=torch.Generator().manual_seed(0))
        for name, decoder in decoders.items():
            images = torch.cat([torch.sigmoid(decoder(chunk)) for chunk in z.split(10_000)])
            row = [reference_is(torch.cat([classify(chunk).double().softmax(1) for chunk in images.split(10_000)]))
                   for classify in classifiers.values()]
            print(f"| {count} | {name} | " + " | ".join(f"{value:.3f}" for value in row) + " |", flush=True)
            cells += [{"samples": count, "vae": name, "classifier": column, "is": value}
                      for column, value in zip(classifiers, row)]
    write_record(record, {
        "what": "the notebook's IS of N(0, I) VAE samples under every classifier, the same latents for every cell",
        "protocol": "one split, +1e-10 inside the log, classifiers deterministic (dropout off), latents"
                    " torch.randn from a Generator seeded 0",
        "vaes": list(decoders), "classifiers": list(classifiers), "networks": networks, "cells": cells})


def train_gan(seed: int, out: Path, epochs: int) -> None:
    """reference/001's vanilla GAN cells as written (noise U(-1, 1) of dimension 10, MLPs 10-1024-1024-784 and
    784-256-256-1 with PyTorch's default init, BCE with logits, Adam 1e-3 betas (0.5, 0.4999), batch 128, 128
    fakes per step, 10 epochs); a fixed-noise grid after every epoch in `out`."""
    from torchvision.utils import save_image

    torch.manual_seed(seed)
    discriminator = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.01), nn.Linear(256, 256), nn.LeakyReLU(0.01),
                                  nn.Linear(256, 1))
    generator = nn.Sequential(nn.Linear(10, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 784),
                              nn.Tanh())
    d_solver = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.4999))
    g_solver = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.4999))
    bce = nn.BCEWithLogitsLoss()

    def noise(n: int) -> torch.Tensor:
        return torch.rand(n, 10) * 2 - 1

    images, _ = mnist("train")
    fixed = noise(64)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(epochs):
        for batch in torch.randperm(len(images)).split(128):
            real = images[batch] * 2 - 1
            d_solver.zero_grad()
            real_logits, fake_logits = discriminator(real), discriminator(generator(noise(128)))
            d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
            d_loss.backward()
            d_solver.step()
            g_solver.zero_grad()
            fake_logits = discriminator(generator(noise(128)))
            g_loss = bce(fake_logits, torch.ones_like(fake_logits))
            g_loss.backward()
            g_solver.step()
        with torch.no_grad():
            save_image((generator(fixed).view(-1, 1, 28, 28) + 1) / 2, out / f"gan-seed{seed}-epoch{epoch + 1}.png")
        print(f"gan seed {seed} epoch {epoch + 1}: D loss {d_loss.item():.3f}, G loss {g_loss.item():.3f}", flush=True)


def train_dcgan(seed: int, out: Path, epochs: int, classifiers: list[Path]) -> dict:
    """reference/001's DCGAN cells [22]-[28] as a plain loop (its networks are genlab's InfoGAN nets with PyTorch's
    default init, checked against the notebook's parameter counts in tests/test_nets.py): uniform noise of
    dimension 10, least squares with the ½ factors, Adam 1e-3 betas (0.5, 0.4999), batch 128 with the last
    incomplete batch kept (with as many fakes as real images, as genlab; the notebook draws 128 there), a D step
    then a G step on fresh noise per batch. Then cell [28]'s protocol: 10,000
    samples drawn at once with the generator in training mode, IS over one split with +1e-10, under each genlab
    classifier given: the figure to set beside genlab's `reference/is` for the same setting."""
    from torchvision.utils import save_image

    from genlab.metrics.classifier_checkpoint import load_classifier
    from genlab.nets import InfoGANDiscriminator, InfoGANGenerator

    torch.manual_seed(seed)
    generator, discriminator = (InfoGANGenerator(latent_dim=10, xavier_init=False),
                                InfoGANDiscriminator(xavier_init=False))
    d_solver = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.4999))
    g_solver = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.4999))
    images, _ = mnist("train")
    images = images.view(-1, 1, 28, 28) * 2 - 1
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in torch.randperm(len(images)).split(128):
            real = images[batch]
            d_solver.zero_grad()
            fake = generator(torch.rand(len(real), 10) * 2 - 1).detach()
            d_loss = 0.5 * (discriminator(real) - 1).pow(2).mean() + 0.5 * discriminator(fake).pow(2).mean()
            d_loss.backward()
            d_solver.step()
            g_solver.zero_grad()
            g_loss = 0.5 * (discriminator(generator(torch.rand(len(real), 10) * 2 - 1)) - 1).pow(2).mean()
            g_loss.backward()
            g_solver.step()
        print(f"dcgan seed {seed} epoch {epoch + 1}: D loss {d_loss.item():.3f}, G loss {g_loss.item():.3f}"
              f" ({time.perf_counter() - start:.0f} s)", flush=True)
    with torch.no_grad():  # cell [28]: the generator stays in training mode, one batch of 10,000
        samples = generator(torch.rand(10_000, 10, generator=torch.Generator().manual_seed(0)) * 2 - 1)
        out.mkdir(parents=True, exist_ok=True)
        save_image((samples[:64] + 1) / 2, out / f"dcgan-seed{seed}.png")
        scores = []
        for folder in classifiers:
            loaded = load_classifier(folder)
            network = loaded.network.eval()
            probs = torch.cat([network(chunk).double().softmax(1) for chunk in samples.split(1000)])
            value = reference_is(probs)
            print(f"dcgan seed {seed}: notebook IS (one split, +1e-10) under {folder}: {value:.3f}", flush=True)
            scores.append({"classifier": folder.name, "sha256": loaded.sha256, "is": value})
    iterations = epochs * -(-len(images) // 128)  # batches of 128, the last incomplete one kept
    return {"seed": seed, "epochs": epochs, "iterations": iterations, "seconds": time.perf_counter() - start,
            "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "score", "gan", "dcgan"])
    parser.add_argument("--out", default="reference_loop",
                        help="where the loop's weights go (default: reference_loop/)")
    parser.add_argument("--seeds", default="0", help="train: comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=20, help="train: epochs of each part (the notebook: 20)")
    parser.add_argument("--genlab-vae", action="append", default=[], type=Path,
                        help="score: a genlab vae_mnist run folder")
    parser.add_argument("--genlab-classifier", action="append", default=[], type=Path,
                        help="score, dcgan: a genlab classifier run or experiment folder")
    parser.add_argument("--samples", default="10000,100000", help="score: sample counts (the notebook: 100000)")
    parser.add_argument("--record", type=Path, help="score, dcgan: also write the figures as a JSON record here")
    args = parser.parse_args()
    if args.command == "dcgan":
        runs = [train_dcgan(seed, Path(args.out), args.epochs, args.genlab_classifier)
                for seed in (int(s) for s in args.seeds.split(","))]
        write_record(args.record, {
            "what": "reference/001's DCGAN cells as a plain loop, scored as cell [28]",
            "protocol": "10,000 samples of U(-1, 1) noise (a Generator seeded 0) in one batch, the generator in"
                        " training mode (BatchNorm batch statistics), IS over one split with +1e-10",
            "runs": runs})
    elif args.command == "gan":
        for seed in (int(s) for s in args.seeds.split(",")):
            train_gan(seed, Path(args.out), args.epochs)
    elif args.command == "train":
        for seed in (int(s) for s in args.seeds.split(",")):
            train(seed, Path(args.out), args.epochs)
    else:
        score(Path(args.out), args.genlab_vae, args.genlab_classifier, [int(n) for n in args.samples.split(",")],
              args.record)


if __name__ == "__main__":
    main()
