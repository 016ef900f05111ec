"""`python -m vnetgen`: the same CLI as the console script."""
from .cli import main

main()
