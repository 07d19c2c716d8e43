"""Off-task probe (thesis Sec. 3.4.3, Table 3.2): how much a triplet-trained trunk still knows
about a label it was not trained on.

The thesis freezes all convolutional filters and replaces the embedding layer "with one hidden
and one softmax classification layer", then classifies 30 brands. Here: the trunk g(x) of a
trained model (the layers before the linear embedding W) is frozen, its features are computed
once, and a classifier Dense(hidden, ReLU) -> Dense(classes) is trained on them with Adam.
Hidden size, optimiser and epochs are not given in the thesis; ours are the defaults below.
"""

from __future__ import annotations

import keras
import numpy as np


def trunk_features(model, images: np.ndarray, *, mean=127.5, std=127.5,
                   batch_size: int = 256) -> np.ndarray:
    """g(x) of a CSN / triplet model (`model.net.trunk`) on uint8 images, `[N, features]`."""
    trunk = model.net.trunk
    outputs = []
    for start in range(0, len(images), batch_size):  # batches of a numpy array, not a tensor loop
        x = (images[start:start + batch_size].astype(np.float32) - np.asarray(mean, np.float32)) / \
            np.asarray(std, np.float32)
        outputs.append(np.asarray(trunk(x, training=False)))
    return np.concatenate(outputs)


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
                   hidden: int = 64, epochs: int = 30, learning_rate: float = 1e-3, seed: int = 0) -> float:
    """Top-1 test accuracy of a one-hidden-layer classifier trained on frozen features."""
    keras.utils.set_random_seed(seed)
    # Standardise with the training features' statistics (trunks differ in scale).
    mu, sigma = train_x.mean(0), train_x.std(0) + 1e-6
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    classifier = keras.Sequential([
        keras.Input((train_x.shape[1],)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(num_classes),
    ])
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    classifier.fit((train_x - mu) / sigma, train_y, batch_size=128, epochs=epochs, verbose=0, shuffle=True)
    _, accuracy = classifier.evaluate((test_x - mu) / sigma, test_y, verbose=0)
    return float(accuracy)
