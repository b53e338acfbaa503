"""Dense motion networks: combine sparse transforms into a per-pixel flow and occlusion masks."""
