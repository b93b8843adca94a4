"""Every `wattrail` verb, one module per command group; `wattrail/cli.py` mounts them.

The product's packages (protocols, security, edge, cloud, firmware_sim) import neither typer
nor rich: a command parses its options, calls the package's functions and prints the result."""
