"""Sole writers of important state: each workflow validates fully, then writes."""
