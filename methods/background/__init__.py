"""Background motion predictors (a global affine between source and driving frames)."""
