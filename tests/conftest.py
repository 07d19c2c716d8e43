"""Test-wide settings: a private data cache, quiet TensorFlow, no GPU use."""

import os
import tempfile

# Set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Generated datasets go to one folder per test session, never to the user's cache.
os.environ["GARDEN_DATA_DIR"] = tempfile.mkdtemp(prefix="garden-test-data-")
