"""Generators: render the source image under a dense motion (FOMM occlusion-aware, MRAA, TPSMM inpainting)."""
