"""One module per ``green-mlops`` subcommand; ``green_mlops.cli`` only dispatches to them."""
