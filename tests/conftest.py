"""Test-wide settings: a private data cache, quiet TensorFlow, no GPU use."""

import os
import tempfile

# Set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Generated datasets go to one folder per test session, never to the user's cache.
os.environ["GARDEN_DATA_DIR"] = tempfile.mkdtemp(prefix="garden-test-data-")


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_keras_state_after_each_module():
    """Free each test module's models and traced graphs before the next module runs.

    Without this the single pytest process keeps every module's Keras global state and grows
    past the CI machine's 24 GiB over the ~850 tests (an OOM kill was observed).
    """
    yield
    import keras

    keras.backend.clear_session()
    gc.collect()
