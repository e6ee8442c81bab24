"""Dramatiq actors: thin wrappers that parse a message and call into `app/`.

Importing this package declares nothing; `actors.broker.setup_broker` builds the
broker and `actors.registry.register_all` declares every actor on it.
"""
