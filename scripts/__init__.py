"""Developer scripts (code generation); not shipped."""
