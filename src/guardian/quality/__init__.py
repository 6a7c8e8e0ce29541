"""Data-quality checks and their stored results (schema, completeness, business rules, drift)."""
