"""Plane integration: REST client, status model (Layer B) and webhook parsing."""
