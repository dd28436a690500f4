"""Lifecycle: EOL data (format and status), the endoflife.date client, and base-image facts."""
