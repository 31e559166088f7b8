"""Models that pixeldrop makes itself."""
