"""One module per kind of summary: plugin name, metadata and the value builder."""
