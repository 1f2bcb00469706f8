"""Trains a tiny convolutional model with mpsnorm layers on synthetic data.

The task: tell horizontal from vertical stripes in small images whose lighting
varies wildly (a random gain and offset per image, and a gradient across it).
The first layer, local contrast normalization, removes the lighting; instance
normalization follows a convolution. Forward and backward of both run
mpsnorm's kernels (CPU).

    pip install torch && python examples/train_tiny.py [--steps 40]
"""
import argparse
import math

import torch

from mpsnorm.torch import InstanceNormalization, LocalContrastNormalization


def make_batch(generator, size=32, side=16):
    """Images (size, 1, side, side) of stripes under uneven lighting, labels 0/1."""
    labels = torch.randint(0, 2, (size,), generator=generator)
    rows = torch.arange(side, dtype=torch.float32).view(side, 1)
    columns = torch.arange(side, dtype=torch.float32).view(1, side)
    period = 2.0 + 4.0 * torch.rand(size, 1, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(size, 1, 1, generator=generator)
    along = torch.where(labels.view(size, 1, 1) == 1, rows, columns)
    stripes = torch.sin(2 * math.pi * along / period + phase)
    gain = 0.05 + 2.0 * torch.rand(size, 1, 1, generator=generator)
    offset = 3.0 * torch.rand(size, 1, 1, generator=generator)
    slope = torch.rand(size, 1, 1, generator=generator) * (rows + columns) / side
    noise = 0.05 * torch.randn(size, side, side, generator=generator)
    images = offset + slope + gain * (1.0 + slope) * stripes + noise
    return images.unsqueeze(1), labels


def make_model():
    return torch.nn.Sequential(
        LocalContrastNormalization(5, alpha=1.0),   # mpsnorm: contrast, not lighting
        torch.nn.Conv2d(1, 8, kernel_size=3, padding=1),
        InstanceNormalization(8),                    # mpsnorm: learnable weight and bias
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, kernel_size=3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    test_images, test_labels = make_batch(generator, size=256)
    losses = []
    for step in range(1, args.steps + 1):
        images, labels = make_batch(generator)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step == 1 or step % 5 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"mean loss of the first 5 steps {first:.4f}, of the last 5 steps {last:.4f}; "
          f"held-out accuracy {accuracy:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
