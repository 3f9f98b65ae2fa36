"""Built-in data (scikit-learn digits) and tiny models with shipped weights."""
