"""planeflow: drives Plane work items through an automated software pipeline."""

__version__ = "0.1.0"
