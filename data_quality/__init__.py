"""Data-quality rules, kept apart from the pipeline so a data steward can review them."""
