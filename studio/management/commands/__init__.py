"""`manage.py demo`, `manage.py serve` and the other studio commands."""
