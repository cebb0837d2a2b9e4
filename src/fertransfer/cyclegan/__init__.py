"""The cyclegan stage."""
