"""Launch the upstream cooperbench runner for one pair and setting."""
