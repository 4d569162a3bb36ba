"""The schema generator's parts (scripts/generate_schemas.py is the entry point)."""
