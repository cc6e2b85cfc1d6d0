"""The demo: the engine on the demo universe with a live tick simulator and a terminal table."""
