"""Batch Studio's Django project and app: web studio, registry, job dispatch."""
