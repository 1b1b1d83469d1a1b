"""The check functions called by each lecture's exercise cells, one module per lecture (`lecture01`, ...)."""
