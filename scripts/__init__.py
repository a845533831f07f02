"""Developer scripts (screenshots); run as ``python -m scripts.<name>`` from the project root."""
