"""`python -m vnetgen`: the same CLI as the console script."""
from .entry import main

main()
