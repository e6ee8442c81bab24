"""The domain core: stages, transitions and models. No I/O lives here."""
