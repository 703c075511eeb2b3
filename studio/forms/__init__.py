"""UI forms, one module per area; field rules come from the engine and services."""
