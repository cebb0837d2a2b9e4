"""CycleGAN networks, after Zhu et al. (2017) and the authors' pytorch-CycleGAN-and-pix2pix.

Generators: a ResNet (reflection padding, instance norm, 2 down, N residual blocks, 2 up)
and a U-Net with skip connections; the discriminator is a PatchGAN that scores
overlapping patches. Weights start from N(0, 0.02), as in the paper.

`resnet_6blocks_residual` is the ResNet generator as a correction of its input: it starts as
the identity and learns what to change. Between aligned faces (FER-like framing) most of the
face, the expression above all, should stay where it is; a generator that has to rebuild the
whole image from noise loses it first and learns it back last, if ever.

`resnet_6blocks_residual_resize` upsamples by nearest-neighbour resizing and a 3x3 convolution
instead of transposed convolutions, whose uneven overlap draws a checkerboard once the
adversarial loss rewards fine texture (Odena et al. 2016, "Deconvolution and checkerboard
artifacts"); seen on a person with a small footage set (speaker_a, 130 faces).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .diffaugment import diff_augment
from .tensors import match_channels

GENERATORS = ("resnet_6blocks", "resnet_9blocks", "unet", "resnet_6blocks_residual", "resnet_6blocks_residual_resize")
# What is trained (train.build_objective): CycleGAN's two generators; a shared-encoder autoencoder with a
# decoder per domain (autoencoder.py); one generator with PatchNCE, with and without its identity term (cut.py);
# one generator that edits the nearest of the person's own crops (reference.py).
MODELS = ("cyclegan", "autoencoder", "cut", "fastcut", "reference")


def _norm(channels: int) -> nn.Module:
    # Instance norm without learnt affine or running stats, as in the authors' code.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=True), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=True), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def upsample_layer(channels: int, upsample: str) -> nn.Module:
    """Double the resolution and halve the channels: transposed convolution (the paper's) or resize-convolution."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=True)
    if upsample == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                             nn.Conv2d(channels, channels // 2, 3, bias=True))
    raise ValueError(f"upsample must be transpose or resize, got {upsample!r}")


class ResnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
                 upsample: str = "transpose"):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True),
        ]
        for i in range(2):  # downsample
            c = ngf * 2**i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=True), _norm(c * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # upsample
            c = ngf * 2 ** (2 - i)
            layers += [upsample_layer(c, upsample), _norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, concatenated with the input."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, out_channels: int | None = None):
        super().__init__()
        self.outermost = outermost
        in_channels = in_channels or outer
        down = [nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=True)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, out_channels or outer, 4, stride=2, padding=1), nn.Tanh()]
            layers = down + [submodule] + up
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=True), _norm(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + up
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=True), _norm(outer)]
            layers = [nn.LeakyReLU(0.2, True)] + down + [_norm(inner), submodule] + up
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net whose bottleneck is 1x1: log2(image_size) levels (7 at 128 px, as unet_128)."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, ngf: int = 64):
        super().__init__()
        num_downs = int(math.log2(image_size))
        if 2**num_downs != image_size or num_downs < 5:
            raise ValueError(f"the unet generator needs a power-of-two image size of at least 32, got {image_size}")
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetBlock(ngf, ngf, in_channels=in_channels, submodule=block, outermost=True,
                               out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: n_layers strided convolutions; one logit per overlapping patch (70x70 at n_layers=3).
    With an `augment` policy every image it scores is augmented first (diffaugment.py)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, augment: tuple[str, ...] = ()):
        super().__init__()
        self.augment = tuple(augment)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=True),
                _norm(ndf * mult), nn.LeakyReLU(0.2, True),
            ]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(diff_augment(x, self.augment) if self.augment else x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Convolutions from N(0, gain), biases 0 (the paper's initialisation)."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net


class ResidualGenerator(nn.Module):
    """out = tanh(atanh(x) + body(x)): the input plus a learnt change, in the pre-tanh space so the
    output stays in [-1, 1] with a gradient everywhere. body's last convolution starts at zero,
    so the untrained generator is the identity (gray input repeated to RGB when asked)."""

    def __init__(self, body: ResnetGenerator, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        body.model = body.model[:-1]  # drop the Tanh: the sum is squashed instead
        last = body.model[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = body

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """`base`: the image the change is made to (default: x itself; reference.py passes the person's crop)."""
        base = match_channels(x if base is None else base, self.out_channels).clamp(-0.999, 0.999)
        return torch.tanh(torch.atanh(base) + self.body(x))


def build_generator(name: str, in_channels: int, out_channels: int, ngf: int, image_size: int) -> nn.Module:
    if name.startswith("resnet_6blocks_residual"):
        upsample = "resize" if name == "resnet_6blocks_residual_resize" else "transpose"
        if name not in GENERATORS:
            raise ValueError(f"unknown generator '{name}'; choose one of {', '.join(GENERATORS)}")
        body = ResnetGenerator(in_channels, out_channels, ngf, n_blocks=6, upsample=upsample)
        return ResidualGenerator(init_weights(body), out_channels)
    if name == "resnet_6blocks":
        net = ResnetGenerator(in_channels, out_channels, ngf, n_blocks=6)
    elif name == "resnet_9blocks":
        net = ResnetGenerator(in_channels, out_channels, ngf, n_blocks=9)
    elif name == "unet":
        net = UnetGenerator(in_channels, out_channels, image_size, ngf)
    else:
        raise ValueError(f"unknown generator '{name}'; choose one of {', '.join(GENERATORS)}")
    return init_weights(net)


def build_discriminator(in_channels: int, ndf: int, n_layers: int, augment: tuple[str, ...] = ()) -> nn.Module:
    return init_weights(PatchDiscriminator(in_channels, ndf, n_layers, augment))


class ChannelMatch(nn.Module):
    """The identity, in the target domain's channels: CUT's A -> B "translation" (CUT trains FER -> person
    only), so that samples, SWD and checkpoints keep the two directions of the other models."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return match_channels(x, self.out_channels)
