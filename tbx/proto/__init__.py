"""Protocol buffer messages, wire-compatible with TensorBoard event files."""
