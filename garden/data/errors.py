"""The data layer's user-facing error."""

from garden.errors import GardenError


class DataError(GardenError):
    """Bad data input: unknown dataset or variant, bad split, missing or corrupt file or cache."""
