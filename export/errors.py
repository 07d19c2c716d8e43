"""The export stage's user-facing error."""

from garden.errors import GardenError


class ExportError(GardenError):
    """Export failed: parity above tolerance, a model that cannot be converted, a missing checkpoint."""
