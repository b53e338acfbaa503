"""Discriminators for adversarial training (FOMM's optional GAN)."""
