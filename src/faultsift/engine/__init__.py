"""Trial evaluation engines and outcome classification."""
