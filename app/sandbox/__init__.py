"""Fakes beside the real adapters: a sandbox Plane (API + webhook sender) and, later, Gitea.

They serve the tests, the benchmarks and the embedded demo; they are never used
against real services.
"""
