"""`python -m dagagents.testing --port 8765`: serve the fake Messages API until interrupted."""

from dagagents.testing.server import main

main()
