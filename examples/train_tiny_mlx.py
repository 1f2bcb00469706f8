"""Trains a tiny MLX convolutional model with mpsnorm layers on synthetic data.

The task: tell horizontal from vertical stripes in small images whose lighting
varies wildly (a random gain and offset per image, and a ramp across it). Local
contrast normalization, the first layer, takes the lighting out; instance
normalization follows a convolution. Forward and gradient of both run mpsnorm's
kernels; arrays are (N, H, W, C), MLX's layout and the layers' default.

    pip install "mlx[cpu]"   # Linux; on macOS: pip install mlx
    python examples/train_tiny_mlx.py [--steps 40]
"""
import argparse

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from mpsnorm.mlx import InstanceNormalization, LocalContrastNormalization


def stripes(rng, count, side=16):
    """Images (count, side, side, 1) of stripes under uneven lighting, and labels 0/1."""
    labels = rng.integers(0, 2, count)
    grid = np.arange(side, dtype=np.float32)
    rows, columns = np.meshgrid(grid, grid, indexing="ij")
    across = np.where(labels[:, None, None] == 1, rows, columns)
    period = rng.uniform(2.0, 6.0, (count, 1, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (count, 1, 1))
    pattern = np.sin(2 * np.pi * across / period + phase)
    ramp = rng.uniform(0.0, 1.0, (count, 1, 1)) * (rows + columns) / side
    gain = rng.uniform(0.05, 2.05, (count, 1, 1))
    offset = rng.uniform(0.0, 3.0, (count, 1, 1))
    noise = rng.normal(0.0, 0.05, (count, side, side))
    images = offset + ramp + gain * (1.0 + ramp) * pattern + noise
    return mx.array(images[..., None].astype(np.float32)), mx.array(labels)


class StripeClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.contrast = LocalContrastNormalization(5, alpha=1.0)  # mpsnorm: lighting out
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.norm = InstanceNormalization(8)                       # mpsnorm: trainable affine
        self.conv2 = nn.Conv2d(8, 8, kernel_size=3, padding=1)
        self.classify = nn.Linear(8, 2)

    def __call__(self, images):
        h = nn.relu(self.norm(self.conv1(self.contrast(images))))
        h = nn.relu(self.conv2(h))
        return self.classify(h.mean(axis=(1, 2)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    model = StripeClassifier()
    optimizer = optim.Adam(learning_rate=0.02)

    def loss_fn(model, images, labels):
        return nn.losses.cross_entropy(model(images), labels, reduction="mean")

    step_fn = nn.value_and_grad(model, loss_fn)
    test_images, test_labels = stripes(rng, 256)
    losses = []
    for step in range(1, args.steps + 1):
        images, labels = stripes(rng, 32)
        loss, grads = step_fn(model, images, labels)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
        losses.append(loss.item())
        if step == 1 or step % 5 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    accuracy = (model(test_images).argmax(axis=1) == test_labels).astype(mx.float32).mean()
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"mean loss of the first 5 steps {first:.4f}, of the last 5 steps {last:.4f}; "
          f"held-out accuracy {accuracy.item():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
