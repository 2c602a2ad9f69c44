"""Use-of-rank experiments: truncating trained networks at ranks read from their spectra."""
