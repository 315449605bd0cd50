"""Sample quality: metric formulas, feature networks, the quality meter, the linear probe."""
