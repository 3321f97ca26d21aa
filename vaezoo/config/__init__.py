"""Layer 2: typed recipe sections (``options``) and the recipe schema and parsing (``recipe``)."""
