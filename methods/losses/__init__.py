"""Training losses shared by the methods: perceptual, equivariance (with its random TPS), and the
method-specific ones (background, warp, keypoint-semantic, structure) in their own modules."""
