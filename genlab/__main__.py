"""`python -m genlab …`: the `genlab` command."""

from genlab.launch import main

main()
